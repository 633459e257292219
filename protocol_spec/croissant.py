"""Croissant 1.0 JSON-LD (https://mlcommons.org/croissant/1.0) describing a dataset version.

Pure: a verified manifest and a few names in, a JSON object out. The registry embeds it in the
dataset card (``<script type="application/ld+json">``) so that search engines and ML tools can
read the dataset's metadata. Each shard is a ``cr:FileObject`` with its sha256 and size; the
record set's fields come from the manifest's Arrow columns, each read from the shards'
column of the same name. The terms are schema.org ``conditionsOfAccess``: reading the shards
needs a signed grant, so the dataset is not ``isAccessibleForFree``.
"""

from __future__ import annotations

import re
from typing import Any

from .models import DatasetManifest

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
RECORD_SET = "records"
SHARDS = "shards"

CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
"""The Croissant 1.0 context, as the specification's examples write it."""

_DATA_TYPES: tuple[tuple[str, str], ...] = (
    (r"bool", "sc:Boolean"),
    (r"u?int(8|16|32|64)", "sc:Integer"),
    (r"(halffloat|float|double|decimal(32|64|128|256)?\(.*\))", "sc:Float"),
    (r"(large_)?(string|utf8)", "sc:Text"),
    (r"date(32|64)(\[.*\])?", "sc:Date"),
    (r"timestamp\[.*\]", "sc:DateTime"),
    (r"(large_)?binary|fixed_size_binary\[.*\]", "sc:Text"),
)


def croissant_data_type(arrow_type: str) -> str:
    """The Croissant ``dataType`` of an Arrow type's text form (``int64`` → ``sc:Integer``);
    types without a better match (lists, structs, dictionaries) are ``sc:Text``."""
    for pattern, data_type in _DATA_TYPES:
        if re.fullmatch(pattern, arrow_type):
            return data_type
    return "sc:Text"


def spdx_url(license_id: str) -> str:
    """The SPDX licence list page of an identifier (``LicenseRef-…`` ids have none there, and
    link to the list itself)."""
    if license_id.startswith("LicenseRef-"):
        return "https://spdx.org/licenses/"
    return f"https://spdx.org/licenses/{license_id}.html"


def croissant(
    manifest: DatasetManifest,
    *,
    digest: str,
    card_url: str,
    registry_url: str,
    publisher_name: str,
) -> dict[str, Any]:
    """Croissant JSON-LD for ``manifest`` (whose id is ``digest``), served at ``card_url``.

    ``registry_url`` (no trailing slash) is where the shards are fetched
    (``/v1/datasets/<ns>/<name>/blobs/sha256:…``, with a grant); ``publisher_name`` names the
    namespace's owner.
    """
    blobs_url = f"{registry_url}/v1/datasets/{manifest.dataset}/blobs"
    shards = [
        {
            "@type": "cr:FileObject",
            "@id": f"shard-{i}",
            "name": f"shard-{i}",
            "description": f"Arrow IPC stream, {shard.rows} rows",
            "contentUrl": f"{blobs_url}/sha256:{shard.sha256}",
            "contentSize": f"{shard.bytes} B",
            "encodingFormat": ARROW_STREAM,
            "sha256": shard.sha256,
        }
        for i, shard in enumerate(manifest.shards)
    ]
    fields = [
        {
            "@type": "cr:Field",
            "@id": f"{RECORD_SET}/{column.name}",
            "name": column.name,
            "description": f"Arrow type {column.type}",
            "dataType": croissant_data_type(column.type),
            "source": {"fileSet": {"@id": SHARDS}, "extract": {"column": column.name}},
        }
        for column in manifest.columns
    ]
    publisher = {"@type": "sc:Organization", "name": publisher_name}
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": manifest.dataset,
        "description": manifest.description or manifest.dataset,
        "url": card_url,
        "version": f"{manifest.version}.0.0",
        "datePublished": manifest.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "license": spdx_url(manifest.license),
        "conditionsOfAccess": manifest.terms,
        "isAccessibleForFree": False,
        "publisher": publisher,
        "creator": publisher,
        "identifier": f"sha256:{digest}",
        "citeAs": f"{publisher_name}. {manifest.dataset}, version {manifest.version} "
        f"(manifest sha256:{digest}). {card_url}",
        "distribution": [
            *shards,
            {
                "@type": "cr:FileSet",
                "@id": SHARDS,
                "name": SHARDS,
                "description": f"the {len(shards)} shards of version {manifest.version}",
                "containedIn": [{"@id": s["@id"]} for s in shards],
                "encodingFormat": ARROW_STREAM,
                "includes": "*",
            },
        ],
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": RECORD_SET,
                "name": RECORD_SET,
                "description": f"{manifest.total_rows} rows",
                "field": fields,
            }
        ],
    }
