"""Croissant JSON-LD of every dataset version: public metadata, like the manifest it is made of.

``GET /v1/datasets/{ns}/{name}/versions/{version}/croissant`` (``{version}`` a number, or
``latest``: the newest version not deprecated, as for the manifest) answers
``application/ld+json``: the document :func:`~ostraca.protocol_spec.croissant.croissant` builds
from the stored manifest (verified when it was published), with the shards' URLs on this
registry and the card's URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ostraca.protocol_spec.canonical import parse_canonical
from ostraca.protocol_spec.croissant import CROISSANT_SCHEMA, MEDIA_TYPE, croissant, croissant_json
from ostraca.protocol_spec.envelope import Envelope
from ostraca.protocol_spec.errors import MalformedError, NotFoundError
from ostraca.protocol_spec.models import DatasetManifest

from .cards import current_version
from .db import Principal
from .deps import ReadSessionDep
from .parsing import ascii_uint
from .repo import dataset_name, get_dataset, manifest_envelope, owner_of

router = APIRouter(prefix="/v1", tags=["datasets"])


@router.get(
    "/datasets/{ns}/{name}/versions/{version}/croissant",
    response_class=Response,
    responses={
        200: {
            "content": {MEDIA_TYPE: {"schema": CROISSANT_SCHEMA}},
            "description": "Croissant 1.0 JSON-LD of the version",
        }
    },
)
def version_croissant(
    ns: str, name: str, version: str, request: Request, session: ReadSessionDep
) -> Response:
    ds = get_dataset(session, dataset_name(ns, name))
    latest = version == "latest"  # the newest version not deprecated
    number = current_version(session, ds) if latest else ascii_uint(version, max_digits=15)
    if number is None:
        raise MalformedError("version must be a positive integer or 'latest'")
    stored = manifest_envelope(session, ds, number)
    if stored is None:
        raise NotFoundError(f"{ds.name} has no version {version}")
    envelope = Envelope.from_json(stored)
    owner = session.get(Principal, owner_of(session, ds))
    assert owner is not None  # a namespace's owner is a foreign key
    base = str(request.base_url).rstrip("/")
    document = croissant(
        DatasetManifest.from_json_obj(parse_canonical(envelope.payload)),
        digest=envelope.digest,
        card_url=f"{base}/datasets/{ds.name}",
        registry_url=base,
        publisher_name=owner.name,
    )
    return Response(content=croissant_json(document), media_type=MEDIA_TYPE)
