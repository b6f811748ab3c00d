"""The `http_recorder` fixture (tests/conftest.py) does what its tests will rely on: it records
every part of a request and answers, hangs or hangs up as told. Driven by a plain client
(http.client), so nothing of agency-cron is involved."""

from __future__ import annotations

import http.client
import socket
import ssl

import pytest


def connect(recorder, timeout: float = 10) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", recorder.port, timeout=timeout)


def test_records_method_path_query_headers_and_body(http_recorder):
    client = connect(http_recorder)
    client.request(
        "POST",
        "/ping/abc?status=fail&note=&note=two",
        body=b'{"ok": false}\x00\xff',
        headers={"Content-Type": "application/json", "X-Run": "r1"},
    )
    response = client.getresponse()
    assert (response.status, response.read()) == (200, b"")
    [request] = http_recorder.requests
    assert request.method == "POST"
    assert request.path == "/ping/abc"
    assert request.query == {"status": ["fail"], "note": ["", "two"]}
    assert request.body == b'{"ok": false}\x00\xff'
    assert request.header("content-type") == "application/json"
    assert request.header("X-RUN") == "r1"
    assert request.header("missing") is None
    assert ("X-Run", "r1") in request.headers


def test_a_chunked_body_is_recorded_whole(http_recorder):
    client = connect(http_recorder)
    client.request("PUT", "/up", body=iter([b"one ", b"two"]), encode_chunked=True)
    assert client.getresponse().status == 200
    assert http_recorder.requests[0].body == b"one two"


def test_answers_with_the_status_body_and_headers_it_is_given(http_recorder):
    http_recorder.answer(503, b"down", {"Retry-After": "5"})
    http_recorder.answer(204, path="/ok")
    client = connect(http_recorder)
    client.request("GET", "/x")
    response = client.getresponse()
    assert (response.status, response.read(), response.getheader("Retry-After")) == (
        503,
        b"down",
        "5",
    )
    client.request("GET", "/ok")  # the same kept-alive connection
    assert client.getresponse().status == 204
    assert [r.path for r in http_recorder.wait_for(2)] == ["/x", "/ok"]


def test_hang_records_the_request_and_never_answers(http_recorder):
    http_recorder.hang()
    client = connect(http_recorder, timeout=0.5)
    client.request("POST", "/slow", body=b"payload")
    with pytest.raises(socket.timeout):
        client.getresponse()
    assert http_recorder.wait_for(1)[0].body == b"payload"


def test_disconnect_hangs_up_without_an_answer(http_recorder):
    http_recorder.disconnect(path="/gone")
    client = connect(http_recorder)
    client.request("GET", "/gone")
    with pytest.raises(http.client.RemoteDisconnected):
        client.getresponse()
    client = connect(http_recorder)
    client.request("GET", "/other")  # other paths still answer
    assert client.getresponse().status == 200
    assert [r.path for r in http_recorder.requests] == ["/gone", "/other"]


def test_wait_for_fails_when_the_requests_do_not_come(http_recorder):
    with pytest.raises(AssertionError, match="0 of 1 requests arrived"):
        http_recorder.wait_for(1, timeout=0.2)


def test_the_request_line_and_a_json_body_are_kept(http_recorder):
    client = connect(http_recorder)
    client.request("POST", "/hook?x=1", body=b'{"title": "t"}')
    assert client.getresponse().read() == b""
    client.request("POST", "/hook", body=b"[1, 2]")
    assert client.getresponse().status == 200
    assert http_recorder.requests[0].line == "POST /hook?x=1 HTTP/1.1"
    assert http_recorder.json_bodies() == [{"title": "t"}, [1, 2]]


def test_respond_answers_from_what_the_request_carries(http_recorder):
    def by_token(request):
        good = request.header("Authorization") == "Bearer right"
        return (204, b"", {}) if good else (401, b"no", {"X-Why": "token"})

    http_recorder.respond(by_token, path="/guarded")
    client = connect(http_recorder)
    client.request("GET", "/guarded", headers={"Authorization": "Bearer right"})
    response = client.getresponse()
    assert (response.status, response.read()) == (204, b"")
    client.request("GET", "/guarded", headers={"Authorization": "Bearer wrong"})
    response = client.getresponse()
    assert (response.status, response.read(), response.getheader("X-Why")) == (401, b"no", "token")
    client.request("GET", "/open")  # other paths keep the default answer
    assert client.getresponse().status == 200


def test_a_delayed_answer_comes_late_and_a_teardown_cuts_it_short(http_recorder):
    http_recorder.answer(202, b"late", delay=0.2, path="/soon")
    client = connect(http_recorder)
    client.request("GET", "/soon")
    response = client.getresponse()
    assert (response.status, response.read()) == (202, b"late")
    http_recorder.answer(200, delay=600)  # released at teardown, not after ten minutes
    client = connect(http_recorder, timeout=0.5)
    client.request("GET", "/never")
    with pytest.raises(socket.timeout):
        client.getresponse()
    assert [r.path for r in http_recorder.wait_for(2)] == ["/soon", "/never"]


def test_with_an_ssl_context_it_speaks_https(make_http_recorder, tls_certificate):
    cert, context = tls_certificate
    recorder = make_http_recorder(tls=context)
    assert recorder.url == f"https://127.0.0.1:{recorder.port}"
    trusting = ssl.create_default_context(cafile=str(cert))
    client = http.client.HTTPSConnection("127.0.0.1", recorder.port, timeout=10, context=trusting)
    client.request("POST", "/secure", body=b"sealed")
    assert client.getresponse().status == 200
    assert [(r.path, r.body) for r in recorder.requests] == [("/secure", b"sealed")]
    client = http.client.HTTPSConnection(
        "127.0.0.1", recorder.port, timeout=10, context=ssl.create_default_context()
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        client.request("GET", "/untrusted")
    assert len(recorder.requests) == 1  # the refused handshake recorded nothing
