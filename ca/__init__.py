"""Weft's certificate authority: mesh identities, issuing, rotation, trust bundle.

Pure logic: no project imports and no I/O of its own; storage and clock are passed in.
"""

from ._errors import CAError as CAError
from ._errors import InvalidIdentity as InvalidIdentity
from ._identity import SpiffeId as SpiffeId
from ._identity import check_trust_domain as check_trust_domain
from ._identity import is_dns_label as is_dns_label
