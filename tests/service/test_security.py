"""Security defaults and options: API keys, CORS, offline docs, --no-docs, TLS."""

import datetime
import http.client
import ipaddress
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from lc2d.cli import main
from service.app import create_app
from service.settings import ServeSettings

INSTANCES = {"instances": np.ones((1, 8, 8, 1)).tolist()}


def app_client(tiny_model, **settings: object) -> TestClient:
    return TestClient(create_app(ServeSettings(model=[tiny_model.path], device="cpu", threads=1, **settings)))


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text("# one key per line\nfirst-key-123\n\nsecond-key-456\n")
    return path


@pytest.fixture(scope="module")
def keyed(tiny_model, keys_file) -> Iterator[TestClient]:
    with app_client(tiny_model, api_keys=keys_file) as client:
        yield client


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer first-key-12", "Basic first-key-123",
                                    "Bearer "])
def test_api_keys_refuse_requests_without_a_valid_key_with_401(keyed, header) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = keyed.post("/predict", json=INSTANCES, headers=headers)
    assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", ["first-key-123", "second-key-456"])
def test_api_keys_accept_every_listed_key(keyed, key) -> None:
    answer = keyed.post("/predict", json=INSTANCES, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text


def test_api_keys_exempt_health_probes_but_not_metrics_or_docs_by_default(keyed) -> None:
    for path in ("/healthz", "/v2/health/live", "/v2/health/ready"):
        assert keyed.get(path).status_code == 200
    for path in ("/metrics", "/docs", "/openapi.json", "/v2/models/tiny"):
        assert keyed.get(path).status_code == 401


def test_public_metrics_and_docs_need_no_key_when_asked(tiny_model, keys_file) -> None:
    with app_client(tiny_model, api_keys=keys_file, public_metrics=True, public_docs=True) as client:
        for path in ("/metrics", "/docs", "/openapi.json", "/docs/static/swagger-ui.css"):
            assert client.get(path).status_code == 200, path
        assert client.get("/v2/models/tiny").status_code == 401


def test_unreadable_api_keys_file_stops_serve_with_one_line(tiny_model, tmp_path, capsys) -> None:
    (tmp_path / "empty.txt").write_text("# no key\n")
    for keys in (tmp_path / "missing.txt", tmp_path / "empty.txt"):
        assert main(["serve", "--model", str(tiny_model.path), "--port", "0", "--api-keys", str(keys)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lc2d serve: error: --api-keys: expected") and err.count("\n") == 1


def test_cors_answers_only_the_listed_origins(tiny_model) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with app_client(tiny_model, cors_origins=["https://app.example"]) as client:
        allowed = client.options("/predict", headers={"Origin": "https://app.example", **preflight})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.options("/predict", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        answer = client.post("/predict", json=INSTANCES, headers={"Origin": "https://app.example"})
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
    with app_client(tiny_model) as client:  # no origins: no CORS header at all
        answer = client.post("/predict", json=INSTANCES, headers={"Origin": "https://app.example"})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_docs_are_served_from_the_package_without_a_cdn(tiny_model) -> None:
    with app_client(tiny_model) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in page.text
        assert "cdn" not in page.text.lower() and "https://" not in page.text.replace("https://fastapi", "")
        script = client.get("/docs/static/swagger-ui-bundle.js")
        assert script.status_code == 200 and len(script.content) > 100_000
        assert client.get("/openapi.json").json()["info"]["title"] == "lc2d-serve"


def test_no_docs_removes_docs_and_the_schema(tiny_model) -> None:
    with app_client(tiny_model, docs=False) as client:
        assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404
        assert client.post("/predict", json=INSTANCES).status_code == 200


def write_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    address = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(address, critical=False).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_serves_https_with_the_given_certificate(start_server, tiny_model, tmp_path) -> None:
    cert, key = write_certificate(tmp_path)
    server = start_server("--model", str(tiny_model.path), "--threads", "1", "--ssl-certfile", str(cert),
                          "--ssl-keyfile", str(key), wait=False)
    context = ssl.create_default_context(cafile=str(cert))
    deadline = 60
    started = time.monotonic()
    while True:
        try:
            connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
            connection.request("POST", "/predict", json.dumps(INSTANCES),
                               {"Content-Type": "application/json"})
            answer = connection.getresponse()
            break
        except (ConnectionRefusedError, ssl.SSLError, OSError):
            assert time.monotonic() - started < deadline and server.process.poll() is None
            time.sleep(0.2)
    body = json.loads(answer.read())
    np.testing.assert_allclose(body["predictions"], tiny_model.reference(np.ones((1, 8, 8, 1), np.float32)),
                               rtol=1e-5, atol=1e-6)
    plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain.request("GET", "/v2/health/live")
        plain.getresponse()
