"""Consul's DNS interface, as a pure function: query bytes in, answer bytes out.

    <service>.service[.<dc>].consul             A/AAAA (and SRV) of healthy instances
    <tag>.<service>.service[.<dc>].consul       the same, only instances with that tag
    _<service>._<tag|tcp>.service[.<dc>].consul RFC 2782 form (`_tcp` means any tag)
    <service>.connect[.<dc>].consul             the instances' sidecars (their inbound ports)
    <node>.node[.<dc>].consul                   the node's address
    <hex-ip>.addr[.<dc>].consul                 the address spelled in hex (SRV targets)

Names outside the domain are REFUSED: this server answers for the catalog only and never
recurses. Wire encoding is dnspython's; this module only decides what to answer. The trio
layer (`_dns_server.py`) moves bytes.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from ._mirror import Mirror
from ._model import Instance, Status, worst

CLASSIC_UDP_LIMIT = 512  # RFC 1035, for clients that send no EDNS0
OUR_UDP_PAYLOAD = 4096  # what we advertise and accept over EDNS0
TCP_LIMIT = 65535

_A, _AAAA, _SRV, _SOA, _ANY = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.SRV,
    dns.rdatatype.SOA,
    dns.rdatatype.ANY,
)


@dataclass(frozen=True)
class DNSOptions:
    domain: str = "consul"
    datacenter: str = "dc1"
    service_ttl: int = 0  # Consul's defaults: answers are not cached
    node_ttl: int = 0
    soa_min_ttl: int = 0  # negative-caching TTL (RFC 2308), Consul's `soa.min_ttl`
    include_warning: bool = False  # Consul's `only_passing = false`
    rng: random.Random = field(default_factory=random.Random, compare=False)


@dataclass
class _Answer:
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answer: list[tuple[dns.name.Name, int, dns.rdata.Rdata]] = field(default_factory=list)
    additional: list[tuple[dns.name.Name, int, dns.rdata.Rdata]] = field(default_factory=list)
    authoritative: bool = True
    soa: bool = False  # add the zone's SOA to the authority section (NXDOMAIN, NODATA)


def answer(wire: bytes, mirror: Mirror, options: DNSOptions, *, tcp: bool) -> bytes | None:
    """The reply to one DNS message, or None when there is nothing sensible to reply to
    (fewer than 12 bytes, or a message that is itself a response: replying to those would
    let a forged source address bounce packets between two servers)."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    try:
        query = dns.message.from_wire(wire)
    except Exception:  # dnspython raises plain ValueError/IndexError on some corrupt rdata
        return _error_reply(wire, dns.rcode.FORMERR)
    if query.edns > 0:
        return _reply(query, _Answer(rcode=dns.rcode.BADVERS), options, limit=CLASSIC_UDP_LIMIT)
    if query.opcode() != dns.opcode.QUERY:
        return _reply(query, _Answer(rcode=dns.rcode.NOTIMP), options, limit=CLASSIC_UDP_LIMIT)
    if len(query.question) != 1:
        return _reply(query, _Answer(rcode=dns.rcode.FORMERR), options, limit=CLASSIC_UDP_LIMIT)
    if tcp:
        limit = TCP_LIMIT
    elif query.edns == 0:
        limit = max(CLASSIC_UDP_LIMIT, min(query.payload, OUR_UDP_PAYLOAD))
    else:
        limit = CLASSIC_UDP_LIMIT
    question = query.question[0]
    result = resolve(question.name, question.rdtype, question.rdclass, mirror, options)
    return _reply(query, result, options, limit=limit)


def resolve(
    qname: dns.name.Name, qtype: int, qclass: int, mirror: Mirror, options: DNSOptions
) -> _Answer:
    domain = dns.name.from_text(options.domain)
    if qclass not in (dns.rdataclass.IN, dns.rdataclass.ANY) or not qname.is_subdomain(domain):
        return _Answer(rcode=dns.rcode.REFUSED, authoritative=False)
    labels = [label.decode("ascii", "replace").lower() for label in qname.relativize(domain).labels]
    if not labels:  # the zone apex
        if qtype in (_SOA, _ANY):
            return _Answer(answer=[(domain, options.soa_min_ttl, _soa(options))])
        return _Answer(soa=True)
    dc = options.datacenter.lower()
    # `<x>.service.dc1` and `<x>.service` mean the same here; another datacenter is unknown.
    for kind in ("service", "connect", "node", "addr"):
        if kind in labels:
            at = len(labels) - 1 - labels[::-1].index(kind)
            head, tail = labels[:at], labels[at + 1 :]
            if tail not in ([], [dc]) or not head:
                return _nxdomain()
            if kind == "node":
                return _node(qname, qtype, ".".join(head), mirror, options)
            if kind == "addr":
                return _addr(qname, qtype, head, options)
            return _service(qname, qtype, head, kind == "connect", mirror, options)
    return _nxdomain()


def _nxdomain() -> _Answer:
    return _Answer(rcode=dns.rcode.NXDOMAIN, soa=True)


def _soa(options: DNSOptions) -> dns.rdata.Rdata:
    domain = options.domain.rstrip(".")
    return dns.rdata.from_text(
        dns.rdataclass.IN,
        _SOA,
        f"ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 {options.soa_min_ttl}",
    )


def _address_record(address: str) -> dns.rdata.Rdata | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    rdtype = _A if ip.version == 4 else _AAAA
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, str(ip))


def _wants(qtype: int, rdata: dns.rdata.Rdata) -> bool:
    return qtype == _ANY or rdata.rdtype == qtype


def _node(
    qname: dns.name.Name, qtype: int, node: str, mirror: Mirror, options: DNSOptions
) -> _Answer:
    for name in mirror.node_names():
        if name.lower() == node:
            address = mirror.node_address(name)
            break
    else:
        return _nxdomain()
    rdata = _address_record(address)
    if rdata is None or not _wants(qtype, rdata):
        return _Answer(soa=True)
    return _Answer(answer=[(qname, options.node_ttl, rdata)])


def _addr(qname: dns.name.Name, qtype: int, head: list[str], options: DNSOptions) -> _Answer:
    text = head[0] if len(head) == 1 else ""
    try:
        packed = bytes.fromhex(text)
        ip = ipaddress.ip_address(packed) if len(packed) in (4, 16) else None
    except ValueError:
        ip = None
    if ip is None:
        return _nxdomain()
    rdata = _address_record(str(ip))
    if rdata is None or not _wants(qtype, rdata):
        return _Answer(soa=True)
    return _Answer(answer=[(qname, options.service_ttl, rdata)])


def _hex_name(address: str, options: DNSOptions) -> dns.name.Name | None:
    try:
        packed = ipaddress.ip_address(address).packed
    except ValueError:
        return None
    return dns.name.from_text(f"{packed.hex()}.addr.{options.datacenter}.{options.domain}")


def _healthy(mirror: Mirror, inst: Instance, allowed: set[Status]) -> bool:
    statuses = [c.status for c in mirror.checks_of(inst.service, inst.node, inst.id).values()]
    if inst.node in mirror.maint:
        statuses.append(Status.MAINTENANCE)
    return worst(statuses) in allowed


def _find_service(mirror: Mirror, name: str) -> str | None:
    if name in mirror.instances:
        return name
    for candidate in mirror.instances:  # DNS names are case-insensitive; service names not
        if candidate.lower() == name:
            return candidate
    return None


def _service(
    qname: dns.name.Name,
    qtype: int,
    head: list[str],
    connect: bool,
    mirror: Mirror,
    options: DNSOptions,
) -> _Answer:
    tag: str | None = None
    if len(head) == 2 and head[0].startswith("_") and head[1].startswith("_"):
        service, tag = head[0][1:], head[1][1:]  # RFC 2782: _service._proto
        if tag == "tcp":
            tag = None
    elif len(head) == 2:
        tag, service = head
    elif len(head) == 1:
        service = head[0]
    else:
        return _nxdomain()
    name = _find_service(mirror, service)
    if name is None:
        return _nxdomain()
    allowed = {Status.PASSING, Status.WARNING} if options.include_warning else {Status.PASSING}
    chosen: list[tuple[Instance, int]] = []
    for inst in mirror.instances[name].values():
        if tag is not None and tag not in (t.lower() for t in inst.tags):
            continue
        if connect and not inst.sidecar_port:
            continue
        if not _healthy(mirror, inst, allowed):
            continue
        chosen.append((inst, inst.sidecar_port if connect else inst.port))
    if not chosen:
        return _nxdomain()
    options.rng.shuffle(chosen)  # as Consul does: spread clients over the instances
    ttl = options.service_ttl
    result = _Answer()
    if qtype in (_SRV, _ANY):
        seen_targets: set[str] = set()
        for inst, port in chosen:
            address = inst.address or mirror.node_address(inst.node)
            target = _hex_name(address, options)
            rdata = _address_record(address)
            if target is None or rdata is None:
                continue
            weight = max(1, inst.weights.passing)
            srv = dns.rdata.from_text(
                dns.rdataclass.IN, _SRV, f"1 {weight} {port} {target.to_text()}"
            )
            result.answer.append((qname, ttl, srv))
            if address not in seen_targets:
                seen_targets.add(address)
                result.additional.append((target, ttl, rdata))
        if qtype == _SRV:
            if not result.answer:
                result.soa = True
            return result
    seen: set[str] = set()
    for inst, _port in chosen:
        address = inst.address or mirror.node_address(inst.node)
        rdata = _address_record(address)
        if rdata is None or address in seen or not _wants(qtype, rdata):
            continue
        seen.add(address)
        result.answer.append((qname, ttl, rdata))
    if not result.answer:
        result.soa = True
    return result


def _rrsets(
    records: Iterable[tuple[dns.name.Name, int, dns.rdata.Rdata]],
) -> list[dns.rrset.RRset]:
    out: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for name, ttl, rdata in records:
        key = (name, rdata.rdtype)
        rrset = out.get(key)
        if rrset is None:
            rrset = out[key] = dns.rrset.RRset(name, dns.rdataclass.IN, rdata.rdtype)
        rrset.add(rdata, ttl)
    return list(out.values())


def _reply(
    query: dns.message.Message, result: _Answer, options: DNSOptions, *, limit: int
) -> bytes:
    answers = list(result.answer)
    additional = list(result.additional)
    truncated = False
    while True:
        reply = dns.message.make_response(query, our_payload=OUR_UDP_PAYLOAD)
        reply.flags &= ~dns.flags.RA  # never recursive
        if result.authoritative:
            reply.flags |= dns.flags.AA
        if truncated:
            reply.flags |= dns.flags.TC
        reply.set_rcode(result.rcode)
        reply.answer = _rrsets(answers)
        reply.additional = _rrsets(additional)
        if result.soa:
            domain = dns.name.from_text(options.domain)
            reply.authority = _rrsets([(domain, options.soa_min_ttl, _soa(options))])
        try:
            return reply.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # Keep as many answers as fit and set TC, so the client retries over TCP (as
            # Consul does); additional records go first, then answers from the end.
            truncated = True
            if additional:
                additional = []
            elif answers:
                answers = answers[: len(answers) * 3 // 4]
            else:
                raise


def _error_reply(wire: bytes, rcode: int) -> bytes:
    """A bare header answering a message dnspython cannot parse (it may not even have a
    readable question), with the query's ID and opcode so the client can match it."""
    high = 0x80 | (wire[2] & 0x79)  # QR set; the query's opcode and RD kept
    return wire[:2] + bytes([high, rcode & 0x0F]) + b"\0" * 8
