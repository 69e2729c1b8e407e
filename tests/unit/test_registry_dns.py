"""The DNS answer logic (registry/_dns.py): wire bytes in, wire bytes out, no sockets."""

from __future__ import annotations

import random

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
from hypothesis import given
from hypothesis import strategies as st

from registry._dns import DNSOptions, answer
from registry._keys import Keys
from registry._mirror import Mirror
from registry._model import Check, Instance, Status, encode_check, encode_instance
from registry.etcd import KeyValue

KEYS = Keys("/t/")


def catalog(*entries: tuple[Instance, Status | None]) -> Mirror:
    kvs = []
    for rev, (inst, status) in enumerate(entries, start=1):
        kvs.append(
            KeyValue(
                KEYS.instance(inst.service, inst.node, inst.id),
                encode_instance(inst),
                rev,
                rev,
                1,
                0,
            )
        )
        if status is not None:
            check = Check(
                id=f"service:{inst.id}",
                node=inst.node,
                service=inst.service,
                instance=inst.id,
                status=status,
            )
            kvs.append(
                KeyValue(
                    KEYS.check(inst.service, inst.node, inst.id, check.id),
                    encode_check(check),
                    rev,
                    rev,
                    1,
                    0,
                )
            )
    mirror = Mirror(KEYS)
    mirror.load(kvs, revision=len(entries) + 1)
    return mirror


def web(iid: str, address: str, *, node: str = "n1", port: int = 8080, **kw: object) -> Instance:
    return Instance(service="web", id=iid, node=node, address=address, port=port, **kw)  # type: ignore[arg-type]


OPTIONS = DNSOptions(rng=random.Random(1))


def ask(
    mirror: Mirror,
    name: str,
    rdtype: str = "A",
    *,
    options: DNSOptions = OPTIONS,
    tcp: bool = False,
    edns: int = -1,
    payload: int = 1232,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)
    wire = answer(query.to_wire(), mirror, options, tcp=tcp)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id
    return reply


def addresses(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def test_a_query_answers_only_passing_instances() -> None:
    mirror = catalog(
        (web("w1", "10.0.0.1"), Status.PASSING),
        (web("w2", "10.0.0.2"), Status.CRITICAL),
        (web("w3", "10.0.0.3"), Status.WARNING),
        (web("w4", "10.0.0.4"), None),  # no checks: passing, as in Consul
    )
    reply = ask(mirror, "web.service.consul")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA
    assert addresses(reply) == {"10.0.0.1", "10.0.0.4"}
    with_warning = DNSOptions(include_warning=True)
    assert addresses(ask(mirror, "web.service.consul", options=with_warning)) == {
        "10.0.0.1",
        "10.0.0.3",
        "10.0.0.4",
    }


def test_names_are_case_insensitive_and_the_datacenter_label_is_optional() -> None:
    mirror = catalog((web("w1", "10.0.0.1"), Status.PASSING))
    assert addresses(ask(mirror, "WEB.Service.dc1.CONSUL")) == {"10.0.0.1"}
    other_dc = ask(mirror, "web.service.dc2.consul")
    assert other_dc.rcode() == dns.rcode.NXDOMAIN


def test_srv_gives_ports_and_targets_that_resolve_in_the_additional_section() -> None:
    mirror = catalog(
        (web("w1", "10.0.0.1", port=8080), Status.PASSING),
        (web("w2", "10.0.0.2", port=9090, node="n2"), Status.PASSING),
    )
    reply = ask(mirror, "web.service.consul", "SRV")
    srvs = sorted((rd.port, rd.target.to_text()) for rrset in reply.answer for rd in rrset)
    assert srvs == [(8080, "0a000001.addr.dc1.consul."), (9090, "0a000002.addr.dc1.consul.")]
    glue = {rrset.name.to_text(): rrset[0].to_text() for rrset in reply.additional}
    assert glue == {
        "0a000001.addr.dc1.consul.": "10.0.0.1",
        "0a000002.addr.dc1.consul.": "10.0.0.2",
    }
    # The target names themselves resolve, for resolvers that drop the additional section.
    assert addresses(ask(mirror, "0a000002.addr.dc1.consul")) == {"10.0.0.2"}


def test_rfc2782_and_tag_lookups_filter_by_tag() -> None:
    mirror = catalog(
        (web("w1", "10.0.0.1", tags=("v1",)), Status.PASSING),
        (web("w2", "10.0.0.2", tags=("v2", "canary")), Status.PASSING),
    )
    assert addresses(ask(mirror, "v2.web.service.consul")) == {"10.0.0.2"}
    tagged = ask(mirror, "_web._canary.service.consul", "SRV")
    assert [rd.port for rrset in tagged.answer for rd in rrset] == [8080]
    any_tag = ask(mirror, "_web._tcp.service.consul", "SRV")
    assert sum(len(rrset) for rrset in any_tag.answer) == 2
    assert ask(mirror, "v3.web.service.consul").rcode() == dns.rcode.NXDOMAIN


def test_connect_names_answer_the_sidecar_ports() -> None:
    mirror = catalog(
        (web("w1", "10.0.0.1", sidecar_port=21000), Status.PASSING),
        (web("w2", "10.0.0.2"), Status.PASSING),  # no sidecar
    )
    reply = ask(mirror, "web.connect.consul", "SRV")
    assert [rd.port for rrset in reply.answer for rd in rrset] == [21000]


def test_node_names_answer_the_node_address() -> None:
    mirror = catalog((web("w1", "", node="host-a", node_address="192.0.2.7"), Status.PASSING))
    assert addresses(ask(mirror, "host-a.node.consul")) == {"192.0.2.7"}
    assert ask(mirror, "host-b.node.consul").rcode() == dns.rcode.NXDOMAIN
    # The instance has no address of its own: the node's is what clients must dial.
    assert addresses(ask(mirror, "web.service.consul")) == {"192.0.2.7"}


def test_unknown_names_are_nxdomain_with_the_soa_for_negative_caching() -> None:
    mirror = catalog((web("w1", "10.0.0.1"), Status.CRITICAL))
    for name in ("nope.service.consul", "web.service.consul", "whatever.consul"):
        reply = ask(mirror, name)
        assert reply.rcode() == dns.rcode.NXDOMAIN, name
        assert reply.authority[0].rdtype == dns.rdatatype.SOA
        assert reply.authority[0].name.to_text() == "consul."


def test_aaaa_for_an_ipv4_only_service_is_nodata_not_nxdomain() -> None:
    mirror = catalog((web("w1", "10.0.0.1"), Status.PASSING), (web("w6", "2001:db8::6"), None))
    v6 = ask(mirror, "web.service.consul", "AAAA")
    assert addresses(v6) == {"2001:db8::6"}
    only4 = catalog((web("w1", "10.0.0.1"), Status.PASSING))
    nodata = ask(only4, "web.service.consul", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA


def test_names_outside_the_domain_are_refused_never_recursed() -> None:
    reply = ask(catalog(), "example.com")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.RA and not reply.answer


def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    mirror = catalog(*[(web(f"w{i}", f"10.1.{i // 250}.{i % 250 + 1}"), None) for i in range(200)])
    udp = ask(mirror, "web.service.consul")
    assert udp.flags & dns.flags.TC
    assert 0 < len(addresses(udp)) < 200
    assert len(udp.to_wire()) <= 512
    edns = ask(mirror, "web.service.consul", edns=0, payload=1232)
    assert edns.flags & dns.flags.TC and edns.edns == 0
    assert len(addresses(udp)) < len(addresses(edns)) < 200
    tcp = ask(mirror, "web.service.consul", "SRV", tcp=True)
    assert not tcp.flags & dns.flags.TC
    assert sum(len(rrset) for rrset in tcp.answer) == 200


def test_answers_are_shuffled_to_spread_clients() -> None:
    mirror = catalog(*[(web(f"w{i}", f"10.0.0.{i + 1}"), None) for i in range(8)])
    orders = {
        tuple(rd.to_text() for rrset in ask(mirror, "web.service.consul").answer for rd in rrset)
        for _ in range(10)
    }
    assert len(orders) > 1


def test_ttls_come_from_the_options() -> None:
    mirror = catalog((web("w1", "10.0.0.1", node_address="10.0.0.1"), None))
    options = DNSOptions(service_ttl=30, node_ttl=60)
    assert ask(mirror, "web.service.consul", options=options).answer[0].ttl == 30
    assert ask(mirror, "n1.node.consul", options=options).answer[0].ttl == 60


def test_responses_and_runts_are_not_answered_and_garbage_gets_formerr() -> None:
    query = dns.message.make_query("web.service.consul", "A")
    as_response = bytearray(query.to_wire())
    as_response[2] |= 0x80
    assert answer(bytes(as_response), catalog(), OPTIONS, tcp=False) is None
    assert answer(b"\x12\x34\x01", catalog(), OPTIONS, tcp=False) is None
    reply = answer(query.to_wire()[:14], catalog(), OPTIONS, tcp=False)
    assert reply is not None
    assert reply[:2] == query.to_wire()[:2] and reply[3] & 0x0F == dns.rcode.FORMERR


@given(st.binary(min_size=12, max_size=600))
def test_arbitrary_bytes_never_raise(wire: bytes) -> None:
    mirror = catalog((web("w1", "10.0.0.1"), None))
    reply = answer(wire, mirror, OPTIONS, tcp=False)
    assert reply is None or (reply[:2] == wire[:2] and reply[2] & 0x80 and len(reply) <= 512)


def test_non_query_opcodes_are_not_implemented() -> None:
    query = dns.message.make_query("web.service.consul", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    reply = dns.message.from_wire(answer(query.to_wire(), catalog(), OPTIONS, tcp=False) or b"")
    assert reply.rcode() == dns.rcode.NOTIMP


def _raw_query(name_wire: bytes, *, qdcount: int = 1) -> bytes:
    header = b"\xbe\xef\x01\x00" + qdcount.to_bytes(2, "big") + b"\x00" * 6
    return header + name_wire + b"\x00\x01\x00\x01"  # type A, class IN


def test_compression_loops_and_bad_names_get_formerr_not_a_hang() -> None:
    mirror = catalog((web("w1", "10.0.0.1"), None))
    hostile = [
        _raw_query(b"\xc0\x0c"),  # a name that points at itself
        _raw_query(b"\x03web\xc0\x0c"),  # a label, then back to the start: a loop
        _raw_query(b"\xc0\x0e\xc0\x0c"),  # two pointers chasing each other
        _raw_query(b"\xc0\xff"),  # a pointer past the end
        _raw_query(b"\x40" + b"a" * 64 + b"\x00"),  # a label longer than 63
        _raw_query(b"\x3f" + b"a" * 63),  # a name that never ends
        _raw_query(b"\x03web\x00", qdcount=65535),  # promises 65,535 questions, holds one
        _raw_query(b"\x03web\x07service\x06consul\x00")[:-3],  # cut inside the question
    ]
    for wire in hostile:
        reply = answer(wire, mirror, OPTIONS, tcp=False)
        assert reply is not None, wire
        assert reply[:2] == b"\xbe\xef" and reply[2] & 0x80, wire  # the query's ID, a response
        assert reply[3] & 0x0F == dns.rcode.FORMERR, wire
        assert len(reply) == 12, wire  # a bare header: nothing of the input echoed back


def test_edns_versions_past_zero_get_badvers_and_version_zero_our_payload() -> None:
    mirror = catalog((web("w1", "10.0.0.1"), None))
    newer = ask(mirror, "web.service.consul", edns=1)
    assert newer.rcode() == dns.rcode.BADVERS and not newer.answer
    current = ask(mirror, "web.service.consul", edns=0, payload=8192)
    assert current.edns == 0 and current.payload == 4096  # what we accept, not what they asked
    assert addresses(current) == {"10.0.0.1"}
