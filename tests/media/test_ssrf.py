from __future__ import annotations

import ipaddress
import socket

import pytest

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.ssrf import check_url


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("http://127.0.0.1:8000/a.jpg", "address 127.0.0.1 is loopback"),
        ("http://10.0.0.1/a.jpg", "address 10.0.0.1 is private"),
        ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is link-local"),
        ("http://[::1]/a.jpg", "address ::1 is loopback"),
        ("http://0.0.0.0/", "address 0.0.0.0 is unspecified"),
        ("http://224.0.0.1/", "address 224.0.0.1 is multicast"),
        ("http://100.64.0.1/", "address 100.64.0.1 is not globally routable"),
        ("http://2130706433/", "address 127.0.0.1 is loopback"),  # 127.0.0.1 written as one decimal
        ("http://[::ffff:10.0.0.1]/", "is private (embeds 10.0.0.1)"),
        ("http://[2002:a00:1::1]/", "is private (embeds 10.0.0.1)"),  # 6to4
    ],
)
def test_non_public_addresses_are_refused(make_settings, url: str, detail: str) -> None:
    with pytest.raises(TaskError) as caught:
        check_url(url, make_settings())
    assert caught.value.code == ErrorCode.URL_FORBIDDEN
    assert detail in caught.value.detail


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("ftp://example.com/a.jpg", "scheme 'ftp' is not allowed"),
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("not a url", "is not an absolute http(s) URL"),
        ("http:///a.jpg", "has no host"),
        ("http://example.com:99999/", "port 99999 is out of range"),
        ("http://exa mple.com:80x/", "is not a valid URL"),
    ],
)
def test_malformed_urls_are_invalid(make_settings, url: str, detail: str) -> None:
    with pytest.raises(TaskError) as caught:
        check_url(url, make_settings())
    assert caught.value.code == ErrorCode.INVALID_URL
    assert detail in caught.value.detail


def test_allow_listed_network_admits_loopback(make_settings) -> None:
    checked = check_url("http://127.0.0.1:8000/a.jpg", make_settings(allowed_hosts=["127.0.0.1/32"]))
    assert checked.ips == (ipaddress.ip_address("127.0.0.1"),)
    assert checked.port == 8000


def test_allow_listed_network_does_not_admit_its_neighbours(make_settings) -> None:
    with pytest.raises(TaskError) as caught:
        check_url("http://127.0.0.2/", make_settings(allowed_hosts=["127.0.0.1/32"]))
    assert caught.value.code == ErrorCode.URL_FORBIDDEN
    assert "address 127.0.0.2 is loopback" in caught.value.detail


def test_allow_listed_hostname_admits_whatever_it_resolves_to(make_settings) -> None:
    checked = check_url("http://LocalHost:8000/", make_settings(allowed_hosts=["localhost"]))
    assert all(ip.is_loopback for ip in checked.ips)


def test_public_address_is_returned_for_pinning(make_settings) -> None:
    checked = check_url("https://93.184.216.34/a.jpg", make_settings())
    assert checked.ips == (ipaddress.ip_address("93.184.216.34"),)
    assert checked.port == 443


def _fake_resolver(answers: dict[str, list[str]]):
    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    return getaddrinfo


def test_one_private_answer_among_public_ones_is_refused(make_settings, monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_resolver({"mixed.example": ["93.184.216.34", "10.1.2.3"]}))
    with pytest.raises(TaskError) as caught:
        check_url("http://mixed.example/", make_settings())
    assert caught.value.code == ErrorCode.URL_FORBIDDEN
    assert "address 10.1.2.3 is private" in caught.value.detail


def test_unresolvable_host_fails_the_download(make_settings, monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_resolver({}))
    with pytest.raises(TaskError) as caught:
        check_url("http://nowhere.invalid/a.jpg", make_settings())
    assert (caught.value.code, caught.value.detail) == (
        ErrorCode.DOWNLOAD_FAILED,
        "could not resolve host 'nowhere.invalid': Name or service not known",  # no "[Errno -2]"
    )
