"""Intentions (who may call whom), public so the agent compiles them with the server's rules
and the CLI checks what it sends the way the server will."""

from ._intention_model import DEFAULT_NS as DEFAULT_NS
from ._intention_model import WILDCARD as WILDCARD
from ._intention_model import Intention as Intention
from ._intention_model import IntentionProblem as IntentionProblem
from ._intention_model import Name as Name
from ._intention_model import check as check
from ._intention_model import deciding as deciding
from ._intention_model import evaluation_order as evaluation_order
from ._intention_model import match as match
from ._intention_model import parse_body as parse_body
from ._intention_model import parse_name as parse_name
from ._intention_model import precedence as precedence
