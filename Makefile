# The two commands a newcomer needs are the first two targets.
.PHONY: dev test lint bench soak test-hosts test-reactor clean

# Packages whose types mypy checks in `make test` (tests and bench are not type-checked).
TYPED = registry ca proxy agent weft k8s-adapter/k8s_adapter

dev:            ## run the demo mesh locally (installs what it needs first)
	@scripts/bootstrap dev
	@.venv/bin/weft dev

# `make test` runs the files on up to two pytest-xdist workers (one per core, at most two: the
# suite is mostly waiting on subprocesses and sockets, and each worker has its own etcd).
# A file stays on one worker, so module fixtures are built once. TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto --maxprocesses 2

test:           ## run the whole test suite (installs what it needs first)
	@scripts/bootstrap test
	.venv/bin/ruff check .
	.venv/bin/mypy $(TYPED)
	.venv/bin/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint:
	@scripts/bootstrap dev
	.venv/bin/ruff check .
	.venv/bin/mypy $(TYPED)

bench:          ## run every benchmark in bench/ (slow; prints figures)
	@scripts/bootstrap bench
	.venv/bin/python bench/registry.py
	.venv/bin/python bench/ca.py
	.venv/bin/python bench/k8s_sync.py
	.venv/bin/python bench/proxy.py --repeat 5

soak:           ## 10-minute control-plane soak: compaction under 100 agents, 5,000-instance resync
	@scripts/bootstrap bench
	.venv/bin/python bench/soak.py $(SOAK_ARGS)

test-hosts:     ## every slow test: systemd hosts, Ansible, certificate rotations; docs/testing.md
	@scripts/bootstrap hosts
	@scripts/testhost-root build >/dev/null
	.venv/bin/python -m pytest -q -p no:cacheprovider -m slow $(PYTEST_ARGS)

test-reactor:   ## the proxy and gateway suites again, every proxy on the opt-in reactor (~2 min)
	@scripts/bootstrap test
	WEFT_PROXY_IO_WAITS=reactor .venv/bin/python -m pytest -q -p no:cacheprovider \
		tests/integration/test_proxy_*.py tests/integration/test_gateway.py $(PYTEST_ARGS)

clean:
	rm -rf .venv build *.egg-info .pytest_cache .ruff_cache
