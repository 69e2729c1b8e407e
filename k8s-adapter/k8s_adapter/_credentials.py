"""Where the API server is and how to authenticate: in-cluster service account or kubeconfig.

    --kubeconfig FILE given                   that file (and --kube-context, if given)
    KUBERNETES_SERVICE_HOST set, token file   the pod's service account (token re-read as the
      under /var/run/secrets/...                kubelet rotates it, CA from ca.crt)
    otherwise                                 $KUBECONFIG (first file), else ~/.kube/config

Kubeconfig parsing is lightkube's (`KubeConfig`, pure); the HTTP client is the project's
httpx on trio, so credentials become an `ssl.SSLContext` and an `httpx.Auth`. Bearer tokens,
token files, client certificates, basic auth and exec credential plugins (run with
`trio.run_process`, cached until their expiry) are supported.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import trio

from ._errors import ConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class KubeCredentials:
    server: str
    verify: ssl.SSLContext | bool
    auth: httpx.Auth | None
    namespace: str  # the pod's namespace in-cluster, else the context's (default "default")
    description: str  # for the log: where these came from
    in_cluster: bool = False


class TokenFileAuth(httpx.Auth):
    """A bearer token read from a file, re-read once a minute (bound tokens rotate)."""

    def __init__(self, path: Path, *, max_age: float = 60.0) -> None:
        self.path = path
        self.max_age = max_age
        self._token = ""
        self._read_at = -1e9

    def token(self) -> str:
        now = time.monotonic()
        if now - self._read_at > self.max_age or not self._token:
            try:
                self._token = self.path.read_text().strip()
                self._read_at = now
            except OSError as exc:
                if not self._token:
                    raise ConfigError(
                        "kubeconfig", f"cannot read token file {self.path}: {exc}"
                    ) from exc
        return self._token

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


class ExecAuth(httpx.Auth):
    """A kubeconfig `exec` credential plugin (client.authentication.k8s.io ExecCredential)."""

    def __init__(self, command: list[str], env: Mapping[str, str], api_version: str) -> None:
        self.command = command
        self.env = dict(env)
        self.api_version = api_version
        self._token = ""
        self._expires = 0.0

    async def _fetch(self) -> str:
        if self._token and time.time() < self._expires - 30:
            return self._token
        env = {**os.environ, **self.env}
        env["KUBERNETES_EXEC_INFO"] = json.dumps(
            {
                "apiVersion": self.api_version,
                "kind": "ExecCredential",
                "spec": {"interactive": False},
            }
        )
        try:
            result = await trio.run_process(
                self.command, env=env, capture_stdout=True, capture_stderr=True
            )
            status = json.loads(result.stdout)["status"]
        except subprocess.CalledProcessError as exc:
            raise ConfigError(
                "kubeconfig",
                f"exec credential plugin {self.command[0]!r} exited {exc.returncode}: "
                f"{exc.stderr.decode(errors='replace').strip()[:300]}",
            ) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                "kubeconfig", f"exec credential plugin {self.command[0]!r} failed: {exc}"
            ) from exc
        self._token = status["token"]
        expiry = status.get("expirationTimestamp")
        self._expires = (
            datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
            if expiry
            else time.time() + 300
        )
        return self._token

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, Any]:
        request.headers["Authorization"] = f"Bearer {await self._fetch()}"
        yield request


def load(
    kubeconfig: str = "",
    context: str = "",
    *,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> KubeCredentials:
    environ = os.environ if environ is None else environ
    if kubeconfig:
        return from_kubeconfig(Path(kubeconfig), context)
    host = environ.get("KUBERNETES_SERVICE_HOST")
    if host and (service_account_dir / "token").exists():
        return in_cluster(service_account_dir, host, environ.get("KUBERNETES_SERVICE_PORT", "443"))
    candidates = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates.append(str(Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config"))
    for candidate in candidates:
        if Path(candidate).is_file():
            return from_kubeconfig(Path(candidate), context)
    raise ConfigError(
        "kubeconfig",
        "no credentials: not in a cluster (KUBERNETES_SERVICE_HOST unset or no service-account "
        f"token in {service_account_dir}) and no kubeconfig at {', '.join(candidates)}; "
        "give --kubeconfig",
    )


def in_cluster(directory: Path, host: str, port: str) -> KubeCredentials:
    if ":" in host:
        host = f"[{host}]"
    try:
        namespace = (directory / "namespace").read_text().strip()
    except OSError:
        namespace = "default"
    ca = directory / "ca.crt"
    try:
        verify = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("kubeconfig", f"in-cluster CA {ca} is unusable: {exc}") from exc
    return KubeCredentials(
        server=f"https://{host}:{port}",
        verify=verify,
        auth=TokenFileAuth(directory / "token"),
        namespace=namespace,
        description=f"in-cluster service account ({directory})",
        in_cluster=True,
    )


def from_kubeconfig(path: Path, context: str = "") -> KubeCredentials:
    from lightkube import KubeConfig
    from lightkube.core.exceptions import ConfigError as LightkubeConfigError

    try:
        single = KubeConfig.from_file(str(path)).get(context or None)
    except FileNotFoundError:
        raise ConfigError("kubeconfig", f"{path} does not exist") from None
    except (LightkubeConfigError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("kubeconfig", f"{path}: {exc}") from None
    if single is None:
        raise ConfigError("kube_context", f"{path} has no context {context or '(current)'}")
    cluster, user = single.cluster, single.user
    verify: ssl.SSLContext | bool = True
    if cluster.server.startswith("https://"):
        if cluster.insecure:
            verify = False
        else:
            verify = ssl.create_default_context()
            try:
                if cluster.certificate_auth_data:
                    verify.load_verify_locations(
                        cadata=base64.b64decode(cluster.certificate_auth_data).decode()
                    )
                elif cluster.certificate_auth:
                    verify.load_verify_locations(
                        cafile=str(single.abs_file(cluster.certificate_auth))
                    )
            except (OSError, ValueError, ssl.SSLError) as exc:
                raise ConfigError("kubeconfig", f"{path}: cluster CA is unusable: {exc}") from None
            if user is not None:
                _load_client_cert(verify, single, path)
    auth: httpx.Auth | None = None
    if user is not None:
        if user.token:
            auth = _StaticToken(user.token)
        elif user.token_file:
            auth = TokenFileAuth(Path(single.abs_file(user.token_file)))
        elif user.exec:
            env = {e.name: e.value for e in user.exec.env or []}
            auth = ExecAuth([user.exec.command, *(user.exec.args or [])], env, user.exec.apiVersion)
        elif user.username and user.password:
            auth = httpx.BasicAuth(user.username, user.password)
        elif user.auth_provider:
            raise ConfigError(
                "kubeconfig",
                f"{path}: auth-provider plugins are gone from Kubernetes; use an exec plugin",
            )
    return KubeCredentials(
        server=cluster.server.rstrip("/"),
        verify=verify,
        auth=auth,
        namespace=single.namespace,
        description=f"kubeconfig {path} context {single.context_name}",
    )


class _StaticToken(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = self._header
        yield request


def _load_client_cert(context: ssl.SSLContext, single: Any, path: Path) -> None:
    user = single.user
    if user.client_cert_data and user.client_key_data:
        # ssl loads certificates from files only; these live just long enough to be read.
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert.write_bytes(base64.b64decode(user.client_cert_data))
            key.touch(mode=0o600)
            key.write_bytes(base64.b64decode(user.client_key_data))
            context.load_cert_chain(str(cert), str(key))
    elif user.client_cert and user.client_key:
        try:
            context.load_cert_chain(
                str(single.abs_file(user.client_cert)), str(single.abs_file(user.client_key))
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("kubeconfig", f"{path}: client certificate unusable: {exc}") from None
