"""The relying parties of the configured OpenID providers, as the sign-in pages build them."""

from __future__ import annotations

import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from fastapi import Request

from bastion.web.providers import party
from tests.harness import run_bastion
from tests.tls import make_local_ca


def test_an_extra_ca_is_trusted_beside_the_system_store_not_instead_of_it(tmp_path: Path) -> None:
    """`BASTION_EGRESS_CA_FILE` adds a CA (a private IdP's): sign-in through a public provider, whose
    certificate chains to the system's store, must still verify."""
    pem = tmp_path / "extra-ca.pem"
    pem.write_bytes(make_local_ca().ca_pem)
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    provider = {"name": "corp", "issuer": "https://idp.example.com", "client_id": "bastion", "client_secret": "s"}
    with run_bastion(tmp_path, oidc_providers=[provider], egress_ca_file=str(pem)) as bastion:
        request = cast(Request, SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace())))
        relying_party: Any = party(request, bastion.services.auth, "corp")
        context: ssl.SSLContext = relying_party._ssl
        assert context.cert_store_stats()["x509_ca"] == system + 1
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
