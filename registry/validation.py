"""The registry's input rules, public so the agent checks service definitions the same way the
server will (and names the same fields and rules when they are broken)."""

from ._decode import F as F
from ._decode import decode as decode
from ._decode import parse_duration as parse_duration
from ._errors import InvalidInput as InvalidInput
from ._validate import CHECK_SHAPE as CHECK_SHAPE
from ._validate import PROTOCOLS as PROTOCOLS
from ._validate import address as address
from ._validate import instance_id as instance_id
from ._validate import meta as meta
from ._validate import node_name as node_name
from ._validate import port as port
from ._validate import protocol as protocol
from ._validate import service_name as service_name
from ._validate import status as status
from ._validate import tags as tags
from ._validate import weights as weights
