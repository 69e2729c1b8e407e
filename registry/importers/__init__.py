"""Importers: other meshes' traffic resources, as they are written, into Weft's
(`weft.dev/v1` Route, ServiceDefaults, Subset, Gateway, ExternalService). Pure; see
docs/importers.md.

Linkerd ServiceProfile, Istio VirtualService, DestinationRule and ServiceEntry, Gateway API
HTTPRoute (the GAMMA mesh form) and SMI TrafficSplit. Each field not honoured is a warning naming it
(`VirtualService reviews: http[0].corsPolicy is not supported and is ignored`); a deliberate
difference from the anchor (Istio's implicit retries, made explicit and safe) is a note.
"""

from ._convert import KINDS as KINDS
from ._convert import Imported as Imported
from ._convert import convert as convert
from ._convert import is_foreign as is_foreign
from ._names import Naming as Naming
from ._names import service_of as service_of
