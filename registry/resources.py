"""Weft's traffic resources (`apiVersion: weft.dev/v1`), public so the CLI checks a file the
way the server will and the agent reads stored resources with the same rules."""

from ._decode import parse_duration as parse_duration
from ._gateway_resources import covered as covered
from ._resources import API_VERSION as API_VERSION
from ._resources import KINDS as KINDS
from ._resources import Resource as Resource
from ._resources import check_document as check_document
from ._resources import describe as describe
from ._resources import validate_all as validate_all
