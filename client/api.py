"""Typed client for the registry's HTTP API (``protocol_spec/HTTP_API.md``).

One method per endpoint, typed responses, and a few conveniences that build and sign a statement
locally before sending it (:meth:`RegistryClient.request_access`, :meth:`~RegistryClient.approve`,
:meth:`~RegistryClient.revoke`). Private keys never leave this process; the registry only ever
sees signatures and wrapped data keys (:mod:`.keyflow`, ENCRYPTION.md).

Requests and answers are the wire models of ``protocol_spec/wire.py``. Every foreign exception —
httpx transport errors, problem+json answers, bodies that do not parse — is translated to an
:class:`~ostraca.protocol_spec.errors.OstracaError` in one place, :mod:`.wire` (which calls
:mod:`.problems`). Logging in is automatic: a bearer token is cached (:mod:`.tokens`) until
shortly before it expires, and a 401 on an authenticated call triggers one fresh login and one
retry.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel

from ostraca.protocol_spec import (
    AccessGrant,
    AccessRequest,
    AuthenticationError,
    DatasetManifest,
    Envelope,
    KeyRotation,
    MalformedError,
    PublicKey,
    Revocation,
    SigningKey,
    sign_statement,
    utc_now,
    wire,
)
from ostraca.protocol_spec.auth import login_message, registration_message
from ostraca.protocol_spec.wire import (
    AuditEventOut,
    AuditList,
    BlobOut,
    ChallengeOut,
    DatasetDetail,
    DatasetList,
    GrantList,
    NamespaceDetail,
    NamespaceOut,
    PrincipalOut,
    PublishOut,
    RequestItem,
    RequestList,
    RevocationOut,
    RotationList,
    RotationOut,
    TokenOut,
    UploadOut,
)

from .config import ClientConfig
from .keyflow import approve_keys, ensure_encryption_key
from .keystore import load_signing_key
from .tokens import TokenCache
from .trust import OfferedKeys
from .wire import DEFAULT_TIMEOUT, Wire, blob_path, dataset_path, parse

__all__ = ["RegistryClient"]

M = TypeVar("M", bound=BaseModel)


def _blobs(digest: str) -> str:
    """``/blobs/sha256:<hex>`` (checked), below a dataset's or namespace's URL (none outside)."""
    return blob_path(digest).removeprefix("/v1")


class RegistryClient:
    """A session with one registry as one identity.

    ``transport`` replaces httpx's network transport (tests, proxies); ``key`` replaces the key
    file named by ``config.identity`` (loaded lazily, only when a call needs to sign).
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        key: SigningKey | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    ) -> None:
        self.config = config
        self._key = key
        self._tokens = TokenCache(config.token_file, registry=config.registry)
        self._wire = Wire(
            config.registry, transport=transport, timeout=timeout, limits=config.limits
        )

    # lifecycle

    def close(self) -> None:
        self._wire.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # identity

    @property
    def base_url(self) -> str:
        """The registry's root URL without a trailing slash (paths start with ``/v1``)."""
        return self.config.registry

    @property
    def transport(self) -> Wire:
        """The HTTP transport this client talks through (shared, e.g. by the log checks)."""
        return self._wire

    @property
    def key(self) -> SigningKey:
        """This identity's signing key (read from ``config.identity`` on first use)."""
        if self._key is None:
            self._key = load_signing_key(
                self.config.identity_path, passphrase=self.config.passphrase
            )
        return self._key

    @property
    def keyid(self) -> str:
        return self.key.keyid

    @property
    def principal_id(self) -> str:
        """This identity's stable id, the key it registered with, which its grants name
        (SPEC.md 3.3): as its login answered (no extra round trip while a token is cached)."""
        return self._token().principal.keyid

    def _token(self) -> TokenOut:
        return self._tokens.valid(self.keyid) or self.login()

    def auth_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer …"}``, logging in first when no valid token is cached."""
        return {"Authorization": f"Bearer {self._token().token}"}

    def _send(
        self,
        method: str,
        path: str,
        *,
        auth: bool = False,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str | int | None] | None = None,
        headers: Mapping[str, str] | None = None,
        dataset: str | None = None,
        ok_404: bool = False,
    ) -> httpx.Response:
        """:meth:`Wire.send`, logged in when ``auth``: a 401 then means the token went stale
        (expired, revoked, the key rotated), so it is dropped and the call is sent once more."""
        hdrs = dict(headers or {})
        accept = {404} if ok_404 else set()
        for retry in (auth, False):
            if auth:
                hdrs.update(self.auth_headers())
            response = self._wire.send(
                method,
                path,
                json_body=json_body,
                content=content,
                params=params,
                headers=hdrs,
                dataset=dataset,
                accept=accept | {401} if retry else accept,
            )
            if response.status_code != 401:
                return response
            self._tokens.forget()
        raise AssertionError("unreachable")  # pragma: no cover

    def _post_envelope(
        self, path: str, envelope: Envelope, model: type[M], *, auth: bool = True
    ) -> M:
        """POST a signed statement (its envelope, byte for byte) and parse the answer."""
        response = self._send(
            "POST",
            path,
            auth=auth,
            content=envelope.to_json(),
            headers={"Content-Type": "application/json"},
        )
        return parse(response, model)

    # identity endpoints

    def register(self, name: str, kind: str, affiliation: str = "") -> PrincipalOut:
        """Register this key (proof of possession: a signature over ``registration_message``)."""
        public = self.key.public.b64
        message = registration_message(
            public_key=public, name=name, kind=kind, affiliation=affiliation
        )
        body = {
            "public_key": PublicKey.from_verify_key(self.key.public).model_dump(mode="json"),
            "name": name,
            "kind": kind,
            "affiliation": affiliation,
            "signature": _b64(self.key.sign(message)),
        }
        return parse(self._send("POST", "/v1/principals", json_body=body), PrincipalOut)

    def get_principal(self, keyid: str) -> PrincipalOut:
        return parse(self._send("GET", f"/v1/principals/{keyid}"), PrincipalOut)

    def challenge(self) -> ChallengeOut:
        body = {"keyid": self.keyid}
        return parse(self._send("POST", "/v1/auth/challenge", json_body=body), ChallengeOut)

    def login(self) -> TokenOut:
        """Challenge → sign ``login_message(nonce)`` → bearer token (cached on disk, 0600)."""
        nonce = self.challenge().nonce
        body = {
            "keyid": self.keyid,
            "nonce": nonce,
            "signature": _b64(self.key.sign(login_message(nonce))),
        }
        token = parse(self._send("POST", "/v1/auth/token", json_body=body), TokenOut)
        self._tokens.store(token, self.keyid)
        return token

    def logout(self) -> None:
        """Revoke this identity's tokens on the registry (this session's and the cached one)."""
        cached = (self._tokens.current, self._tokens.cached(self.keyid))
        tokens = {t.token for t in cached if t is not None}
        for token in tokens:
            with contextlib.suppress(AuthenticationError):  # already expired or revoked
                self._send("DELETE", "/v1/auth/token", headers={"Authorization": f"Bearer {token}"})
        self._tokens.forget()

    def whoami(self) -> PrincipalOut:
        return parse(self._send("GET", "/v1/whoami", auth=True), PrincipalOut)

    def rotate_key(self, new_key: SigningKey, *, reason: str = "") -> RotationOut:
        """Hand this identity's authority to ``new_key``: sign a :class:`KeyRotation` with the
        current key and with ``new_key`` (proof of possession of both) and submit it.

        From then on this client signs and logs in with ``new_key`` (the registry revoked every
        token of the old one); :attr:`principal_id` stays. Saving ``new_key`` to the identity
        file and re-wrapping the escrow (``keyflow.rewrap_escrow``) are the caller's job
        (``ostraca rotate-key`` does both, keeping the old file).
        """
        old, new, now = self.key, PublicKey.from_verify_key(new_key.public), utc_now()
        statement = KeyRotation(old_key=old.keyid, new_key=new, reason=reason, created=now)
        envelope = sign_statement(statement, [old, new_key])
        path = f"/v1/principals/{old.keyid}/rotations"
        item = self._post_envelope(path, envelope, RotationOut, auth=False)
        self._tokens.forget()
        self._key = new_key
        return item

    def rotations(self, keyid: str) -> list[RotationOut]:
        """The rotation chain of the principal with key ``keyid`` (any of its keys), oldest
        first. Not verified here: each link must verify with the key before it."""
        return parse(self._send("GET", f"/v1/principals/{keyid}/rotations"), RotationList).items

    # namespaces and datasets

    def create_namespace(self, name: str) -> NamespaceOut:
        body = {"name": name}
        return parse(self._send("POST", "/v1/namespaces", auth=True, json_body=body), NamespaceOut)

    def get_namespace(self, name: str) -> NamespaceDetail:
        return parse(self._send("GET", f"/v1/namespaces/{name}"), NamespaceDetail)

    def namespace_keys(self, name: str) -> OfferedKeys:
        """The keys the registry lists for ``name``, by key id: the active ones and the rotated
        ones (which still verify the versions and grants they signed before their rotation).

        A plain mapping for verification; :class:`~ostraca.client.trust.TrustStore` also reads
        which keys are rotated and fetches the owner's rotation chain from it when a pinned
        namespace presents a new key.
        """
        ns = self.get_namespace(name)
        return OfferedKeys(
            {k.keyid: k.to_verify_key() for k in ns.keys},
            rotated={
                k.keyid: k.rotated or datetime(1970, 1, 1, tzinfo=UTC)
                for k in ns.keys
                if k.status == "rotated"
            },
            fetch_rotations=lambda: [
                Envelope.from_dict(r.envelope) for r in self.rotations(ns.owner)
            ],
        )

    def list_datasets(
        self, *, search: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> DatasetList:
        params = {"search": search or None, "limit": limit, "offset": offset}
        return parse(self._send("GET", "/v1/datasets", params=params), DatasetList)

    def get_dataset(self, dataset: str) -> DatasetDetail:
        return parse(self._send("GET", dataset_path(dataset), dataset=dataset), DatasetDetail)

    def find_dataset(self, dataset: str) -> DatasetDetail | None:
        """Like :meth:`get_dataset`, but ``None`` for a dataset with no version yet."""
        response = self._send("GET", dataset_path(dataset), ok_404=True)
        return None if response.status_code == 404 else parse(response, DatasetDetail)

    def get_manifest_bytes(self, dataset: str, version: int | str = "latest") -> bytes:
        """The manifest envelope of ``dataset`` at ``version``, byte for byte as published."""
        if version != "latest" and not (isinstance(version, int) and version >= 1):
            raise MalformedError(f"version must be a positive integer or 'latest', not {version!r}")
        path = f"{dataset_path(dataset)}/versions/{version}/manifest"
        return self._send("GET", path, dataset=dataset).content

    def get_manifest_envelope(self, dataset: str, version: int | str = "latest") -> Envelope:
        """The manifest envelope, parsed (not verified: see ``verify_manifest``)."""
        return Envelope.from_json(self.get_manifest_bytes(dataset, version))

    def publish_version(self, envelope: Envelope) -> PublishOut:
        """Publish a signed manifest; every blob it names must already be on the registry."""
        manifest = DatasetManifest.from_json_obj(json.loads(envelope.payload))
        path = f"{dataset_path(manifest.dataset)}/versions"
        return self._post_envelope(path, envelope, PublishOut)

    # blobs

    def start_upload(self, namespace: str, size: int) -> UploadOut:
        """An upload session into our ``namespace`` (only its manifests may list the blob)."""
        body = {"namespace": namespace, "size": size}
        return parse(self._send("POST", "/v1/uploads", auth=True, json_body=body), UploadOut)

    def upload_status(self, upload_id: str) -> UploadOut:
        return parse(self._send("GET", f"/v1/uploads/{upload_id}", auth=True), UploadOut)

    def patch_upload(self, upload_id: str, offset: int, data: bytes) -> UploadOut:
        response = self._send(
            "PATCH",
            f"/v1/uploads/{upload_id}",
            auth=True,
            content=data,
            headers={"Upload-Offset": str(offset), "Content-Type": "application/octet-stream"},
        )
        return parse(response, UploadOut)

    def finish_upload(self, upload_id: str, digest: str) -> BlobOut:
        digest = "sha256:" + digest.removeprefix("sha256:")
        response = self._send(
            "PUT", f"/v1/uploads/{upload_id}", auth=True, params={"digest": digest}
        )
        return parse(response, BlobOut)

    def blob_exists(self, namespace: str, digest: str) -> bool:
        """Whether we uploaded the blob into our ``namespace`` already (HEAD; the same bytes
        in another namespace do not count: they must be sent into this one)."""
        path = f"/v1/namespaces/{namespace}{_blobs(digest)}"
        response = self._send("HEAD", path, auth=True, ok_404=True)
        return response.status_code != 404

    def get_blob(
        self, digest: str, *, dataset: str, byte_range: tuple[int, int] | None = None
    ) -> bytes:
        """A whole blob (or the inclusive ``byte_range``) read through ``dataset``, in memory:
        for small blobs such as chunk lists (shards go through the streaming reader)."""
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else None
        path = dataset_path(dataset) + _blobs(digest)
        return self._send("GET", path, auth=True, headers=headers, dataset=dataset).content

    # access requests

    def file_request(self, envelope: Envelope) -> RequestItem:
        return self._post_envelope("/v1/requests", envelope, RequestItem)

    def request_access(
        self, dataset: str, *, purpose: str, terms_sha256: str | None = None
    ) -> RequestItem:
        """Sign an :class:`AccessRequest` accepting ``dataset``'s current terms and file it.

        ``terms_sha256`` pins the terms the user was shown (if the publisher changed them since,
        the registry refuses the request); by default the current terms are fetched now.
        """
        ensure_encryption_key(self)  # the publisher wraps data keys to it when approving
        terms_sha256 = terms_sha256 or self.get_dataset(dataset).terms_sha256
        statement = AccessRequest(
            dataset=dataset,
            requester=self.keyid,
            purpose=purpose,
            terms_sha256=terms_sha256,
            accept_terms=True,
            created=utc_now(),
            nonce=secrets.token_hex(16),
        )
        return self.file_request(sign_statement(statement, [self.key]))

    def list_requests(
        self, *, dataset: str | None = None, status: str | None = None
    ) -> list[RequestItem]:
        params = {"dataset": dataset or None, "status": status or None}
        return parse(self._send("GET", "/v1/requests", auth=True, params=params), RequestList).items

    def get_request(self, request_id: str) -> RequestItem:
        return parse(self._send("GET", f"/v1/requests/{request_id}", auth=True), RequestItem)

    def deny_request(self, request_id: str, reason: str) -> RequestItem:
        response = self._send(
            "POST", f"/v1/requests/{request_id}/deny", auth=True, json_body={"reason": reason}
        )
        return parse(response, RequestItem)

    # grants and revocations

    def submit_grant(self, envelope: Envelope) -> wire.GrantItem:  # then wraps its data keys
        return approve_keys(self, self._post_envelope("/v1/grants", envelope, wire.GrantItem))

    def approve(
        self,
        request_id: str,
        *,
        expires: datetime,
        not_before: datetime | None = None,
        min_version: int = 1,
        max_version: int | None = None,
        columns: Iterable[str] | None = None,
    ) -> wire.GrantItem:
        """Sign an :class:`AccessGrant` answering a pending request and submit it. On a dataset
        with column groups, ``columns`` must be whole groups (:class:`MalformedError` naming
        them otherwise): the grant then names those groups, which the registry enforces."""
        request = self.get_request(request_id)
        now = utc_now()
        groups = None
        if columns is not None:
            columns = list(columns)
            env = self.get_manifest_envelope(request.dataset)
            latest = DatasetManifest.from_json_obj(json.loads(env.payload))
            groups = latest.groups_for(columns) if latest.column_groups else None
        statement = AccessGrant(
            dataset=request.dataset,
            publisher=self.keyid,
            grantee=request.requester.keyid,  # the stable principal id (SPEC.md 3.3)
            request=request.request_id,
            min_version=min_version,
            max_version=max_version,
            columns=columns,
            groups=groups,
            spec_version=1 if groups is None else 2,
            not_before=(not_before or now).replace(microsecond=0),
            expires=expires.astimezone(UTC).replace(microsecond=0),
            created=now,
        )
        return self.submit_grant(sign_statement(statement, [self.key]))

    def list_grants(self, *, dataset: str | None = None) -> list[wire.GrantItem]:
        params: dict[str, str | int] = {"dataset": dataset} if dataset else {}
        return parse(self._send("GET", "/v1/grants", auth=True, params=params), GrantList).items

    def list_grants_and_key_grants(self, dataset: str) -> GrantList:
        """The caller's grants of ``dataset`` and its key grants of it, in one round trip
        (``key_grants`` is ``None`` from a registry that does not list them there)."""
        params = {"dataset": dataset, "key_grants": "true"}
        return parse(self._send("GET", "/v1/grants", auth=True, params=params), GrantList)

    def get_grant(self, grant_id: str) -> wire.GrantItem:
        return parse(self._send("GET", f"/v1/grants/{grant_id}", auth=True), wire.GrantItem)

    def submit_revocation(self, envelope: Envelope) -> RevocationOut:
        return self._post_envelope("/v1/revocations", envelope, RevocationOut)

    def revoke(self, grant_id: str, *, reason: str = "") -> RevocationOut:
        """Sign a :class:`Revocation` of ``grant_id`` and submit it (effective immediately)."""
        grant = self.get_grant(grant_id)
        statement = Revocation(
            dataset=grant.dataset,
            publisher=self.keyid,
            grant=grant.grant_id,
            reason=reason,
            created=utc_now(),
        )
        return self.submit_revocation(sign_statement(statement, [self.key]))

    # audit and operations

    def audit(
        self, dataset: str, *, limit: int | None = None, after: int | str | None = None
    ) -> list[AuditEventOut]:
        params = {"limit": limit, "after": after}
        response = self._send("GET", f"{dataset_path(dataset)}/audit", auth=True, params=params)
        return parse(response, AuditList).items

    def healthz(self) -> dict[str, Any]:
        body = self._send("GET", "/healthz").json()
        if not isinstance(body, dict):
            raise MalformedError("the registry's /healthz answer is not a JSON object")
        return body


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
