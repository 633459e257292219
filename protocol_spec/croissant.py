"""Croissant 1.0 JSON-LD (https://mlcommons.org/croissant/1.0) describing a dataset version.

Pure: a verified manifest and a few names in, a JSON object out. The registry embeds it in the
dataset card (``<script type="application/ld+json">``) so that search engines and ML tools can
read the dataset's metadata, and serves it for every version at
``GET /v1/datasets/{ns}/{name}/versions/{version}/croissant``; ``ostraca croissant`` builds the
same document from the manifest it verified. Each blob of each shard is a ``cr:FileObject``
with its sha256 and size, and each column group's blobs a ``cr:FileSet``; the record set's
fields come from the manifest's Arrow columns, each read from its group's column of the same
name. The terms are schema.org ``conditionsOfAccess``: reading the shards needs a signed
grant, so the dataset is not ``isAccessibleForFree``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .models import DEFAULT_GROUP, DatasetManifest

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
SEALED = "application/octet-stream"
"""The encoding of a sealed (encrypted) blob: chunks sealed with AES-256-GCM (ENCRYPTION.md 2)."""
MEDIA_TYPE = "application/ld+json"
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

CROISSANT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Croissant 1.0 JSON-LD (https://mlcommons.org/croissant/1.0) of a version: "
    "its shards (cr:FileObject, with sha256) and column groups (cr:FileSet), the record set "
    "of its Arrow columns, licence, terms (conditionsOfAccess), citation and publisher.",
    "required": [
        "@context",
        "@type",
        "conformsTo",
        "name",
        "version",
        "license",
        "conditionsOfAccess",
        "citeAs",
        "publisher",
        "identifier",
        "distribution",
        "recordSet",
    ],
    "properties": {
        "@context": {"type": "object"},
        "@type": {"const": "sc:Dataset"},
        "conformsTo": {"const": CONFORMS_TO},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "url": {"type": "string"},
        "version": {"type": "string"},
        "datePublished": {"type": "string"},
        "license": {"type": "string"},
        "conditionsOfAccess": {"type": "string"},
        "isAccessibleForFree": {"type": "boolean"},
        "publisher": {"type": "object"},
        "creator": {"type": "object"},
        "identifier": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        "citeAs": {"type": "string"},
        "distribution": {"type": "array", "items": {"type": "object"}},
        "recordSet": {"type": "array", "items": {"type": "object"}},
    },
}
"""The JSON Schema of :func:`croissant`'s document (the registry's OpenAPI response type)."""

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


def _file_objects(manifest: DatasetManifest, blobs_url: str) -> dict[str, list[dict[str, Any]]]:
    """A ``cr:FileObject`` per blob of every shard (a shard has one blob per column group),
    by column group, in manifest order, each with its sha256 and size."""
    sealed = manifest.encryption or {}
    files: dict[str, list[dict[str, Any]]] = {group: [] for group in manifest.group_columns()}
    for i, shard in enumerate(manifest.shards):
        for blob in shard.blobs():
            name = f"shard-{i}" if blob.group == DEFAULT_GROUP else f"shard-{i}-{blob.group}"
            encryption = sealed.get(blob.group)
            kind = "Arrow IPC stream" if encryption is None else f"sealed ({encryption.scheme})"
            files[blob.group].append(
                {
                    "@type": "cr:FileObject",
                    "@id": name,
                    "name": name,
                    "description": f"{kind} of column group {blob.group!r}, {shard.rows} rows",
                    "contentUrl": f"{blobs_url}/sha256:{blob.sha256}",
                    "contentSize": f"{blob.bytes} B",
                    "encodingFormat": ARROW_STREAM if encryption is None else SEALED,
                    "sha256": blob.sha256,
                }
            )
    return files


def _file_set(group: str, files: list[dict[str, Any]], version: int) -> dict[str, Any]:
    name = SHARDS if group == DEFAULT_GROUP else f"{SHARDS}-{group}"
    return {
        "@type": "cr:FileSet",
        "@id": name,
        "name": name,
        "description": f"the {len(files)} shards of version {version}, column group {group!r}",
        "containedIn": [{"@id": f["@id"]} for f in files],
        "encodingFormat": files[0]["encodingFormat"],
        "includes": "*",
    }


def _record_set(
    group: str, columns: list[str], types: dict[str, str], file_set: str, rows: int
) -> dict[str, Any]:
    """The record set of a column group's columns, each read from the group's file set (the
    groups' record sets hold the same rows in the same order, SPEC 2.6)."""
    name = RECORD_SET if group == DEFAULT_GROUP else f"{RECORD_SET}-{group}"
    return {
        "@type": "cr:RecordSet",
        "@id": name,
        "name": name,
        "description": f"{rows} rows, the columns of group {group!r}",
        "field": [
            {
                "@type": "cr:Field",
                "@id": f"{name}/{column}",
                "name": column,
                "description": f"Arrow type {types[column]}",
                "dataType": croissant_data_type(types[column]),
                "source": {"fileSet": {"@id": file_set}, "extract": {"column": column}},
            }
            for column in columns
        ],
    }


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
    namespace's owner. Each column group's blobs form a ``cr:FileSet`` (``shards`` for the
    ``default`` group, ``shards-<group>`` for the others) and its columns a ``cr:RecordSet``
    (``records``, ``records-<group>``) read from that file set: Croissant joins record sets
    by key, and the groups share none (their blobs hold the same rows in the same order).
    """
    files = _file_objects(manifest, f"{registry_url}/v1/datasets/{manifest.dataset}/blobs")
    file_sets = {g: _file_set(g, group, manifest.version) for g, group in files.items()}
    types = {c.name: c.type for c in manifest.columns}
    record_sets = [
        _record_set(group, columns, types, file_sets[group]["@id"], manifest.total_rows)
        for group, columns in manifest.group_columns().items()
        if columns
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
        "distribution": [*(f for group in files.values() for f in group), *file_sets.values()],
        "recordSet": record_sets,
    }


def croissant_json(document: dict[str, Any]) -> bytes:
    """The bytes the registry serves for ``document`` (UTF-8, indented), and ``ostraca
    croissant`` prints: the same document gives the same bytes."""
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
