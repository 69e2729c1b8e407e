"""The registry's input rules, public so the agent, the CLI and the Kubernetes adapter check
what they read the same way the server will (and name the same fields and rules when they are
broken). Every number and duration anywhere in Weft is parsed by `parse_number` /
`parse_duration`; every identifier by the functions below (all `fullmatch`, never `$`).
"""

from ._decode import F as F
from ._decode import decode as decode
from ._errors import InvalidInput as InvalidInput
from ._errors import InvalidNumber as InvalidNumber
from ._numbers import MAX_DURATION as MAX_DURATION
from ._numbers import parse_duration as parse_duration
from ._numbers import parse_index as parse_index
from ._numbers import parse_number as parse_number
from ._numbers import parse_wait as parse_wait
from ._validate import CHECK_SHAPE as CHECK_SHAPE
from ._validate import KINDS as KINDS
from ._validate import PROTOCOLS as PROTOCOLS
from ._validate import CheckRules as CheckRules
from ._validate import address as address
from ._validate import build_check as build_check
from ._validate import identity as identity
from ._validate import instance_id as instance_id
from ._validate import kind as kind
from ._validate import meta as meta
from ._validate import namespace as namespace
from ._validate import node_name as node_name
from ._validate import port as port
from ._validate import protocol as protocol
from ._validate import service_name as service_name
from ._validate import source as source
from ._validate import status as status
from ._validate import tags as tags
from ._validate import text as text
from ._validate import weights as weights
