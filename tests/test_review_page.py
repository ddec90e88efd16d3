"""``dataigm review``: the local page over a review queue. Its API (state, images read from the shards, decisions
synced at once, idle stop), re-opening where it stopped, bad queues and decisions files refused, and the real page in
headless Chromium (selenium): keys pressed, decisions file written, the applied revision checked."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers.browser import browser as _browser
from helpers.data import write_test_root
from PIL import Image

from dataigm.cli import main
from dataigm.curate import apply_decisions
from dataigm.reader import iter_samples
from dataigm.review import ReviewServer, read_decisions, write_queue

QUEUED = ["real_00001", "real_00002", "real_00003", "real_00004"]


@pytest.fixture
def root(tmp_path) -> Path:
    return write_test_root(tmp_path / "root", {("church", "test", "real"): [6], ("church", "train", "real"): [2]})


@pytest.fixture
def queue(root, tmp_path) -> Path:
    verdicts = {"judge-a": {"probability": 0.91, "present": True}, "judge-b": {"probability": None, "present": None}}
    records = [
        {"key": key, "shard": "data/church/test/real-00000.tar", "reason": "judges_disagree", "judges": verdicts}
        for key in QUEUED
    ]
    return write_queue(records, tmp_path / "queue.jsonl")


def start(root: Path, queue: Path, decisions: Path, idle: float = 60.0) -> tuple[ReviewServer, threading.Thread]:
    server = ReviewServer(root, queue, decisions, port=0, idle_seconds=idle)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    return server, thread


def get(server: ReviewServer, path: str) -> bytes:
    with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as answer:
        return answer.read()


def post(server: ReviewServer, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        server.url.rstrip("/") + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_api_serves_the_queue_and_saves_each_decision_at_once(root, queue, tmp_path):
    decisions = tmp_path / "decisions.jsonl"
    server, thread = start(root, queue, decisions)
    samples = {s.key: s for s in iter_samples(root, split="test")}
    state = json.loads(get(server, "/api/state"))
    assert [i["key"] for i in state["items"]] == QUEUED and state["next"] == 0
    first = state["items"][0]
    assert (first["label"], first["source"], first["label_source"]) == ("pair", "real", None)
    assert (first["class_name"], first["other_class_name"]) == ("other", "church")  # the concept's class names
    assert first["judges"]["judge-a"]["probability"] == 0.91
    assert get(server, "/image/2") == samples["real_00003"].image  # the bytes of its shard member
    assert b"dataigm review" in get(server, "/")
    answer = post(server, "/api/decision", {"index": 0, "decision": "flip"})
    assert answer["next"] == 1
    # on disk before the answer came back: the header, then the decision
    lines = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert lines[0]["dataset"]["name"] == "dataigm" and lines[1]["decision"] == "flip"
    assert (lines[1]["key"], lines[1]["label"]) == ("real_00001", "pair")
    assert lines[1]["sha256"] == samples["real_00001"].record["sha256"]
    with pytest.raises(urllib.error.HTTPError) as err:
        post(server, "/api/decision", {"index": 1, "decision": "maybe"})
    assert err.value.code == 400 and "keep, flip, skip" in err.value.read().decode()
    post(server, "/api/stop", {})
    thread.join(10)
    assert not thread.is_alive()
    # re-opened: the decision is there and the page starts at the first image without one
    server, thread = start(root, queue, decisions)
    state = json.loads(get(server, "/api/state"))
    assert state["next"] == 1 and state["items"][0]["decision"] == "flip"
    post(server, "/api/stop", {})
    thread.join(10)


def test_the_server_stops_by_itself_when_idle(root, queue, tmp_path):
    server, thread = start(root, queue, tmp_path / "d.jsonl", idle=0.5)
    thread.join(15)
    assert not thread.is_alive()


def test_the_command_prints_its_address_serves_and_stops_when_idle(root, queue, tmp_path):
    code = "import sys; from dataigm.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["review", str(root), "--queue", str(queue), "--idle-minutes", "0.05"]
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("review 4 image(s) (0 decided already) at http://127.0.0.1:")
        url = first.rsplit(" at ", 1)[1].strip()
        request = urllib.request.Request(url + "api/decision", data=b'{"index": 3, "decision": "keep"}')
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read())["next"] == 0
        assert proc.wait(timeout=60) == 0  # stopped by itself after 3 idle seconds
        assert "dataigm curate apply" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    (decision,) = read_decisions(tmp_path / "queue.decisions.jsonl").latest.values()
    assert (decision["key"], decision["decision"]) == ("real_00004", "keep")


def test_a_line_cut_by_a_kill_is_dropped_and_the_rest_kept(root, queue, tmp_path):
    decisions = tmp_path / "decisions.jsonl"
    server, thread = start(root, queue, decisions)
    post(server, "/api/decision", {"index": 0, "decision": "keep"})
    post(server, "/api/stop", {})
    thread.join(10)
    with open(decisions, "a") as f:
        f.write('{"index": 1, "key": "real_00002", "sha')  # the server died while writing
    server, thread = start(root, queue, decisions)
    post(server, "/api/decision", {"index": 1, "decision": "skip"})
    post(server, "/api/stop", {})
    thread.join(10)
    latest = read_decisions(decisions).latest
    assert [d["decision"] for d in latest.values()] == ["keep", "skip"]


def test_a_queue_naming_missing_images_is_refused_in_one_line(root, tmp_path, capsys):
    queue = write_queue(
        [{"key": "real_00001", "shard": "data/church/test/real-00000.tar"}, {"key": "nope", "shard": "data/x.tar"}],
        tmp_path / "queue.jsonl",
    )
    decisions = tmp_path / "decisions.jsonl"
    assert main(["review", str(root), "--queue", str(queue), "--decisions", str(decisions)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataigm review: error:") and "1 image(s) that" in err and "data/x.tar#nope" in err
    assert err.count("\n") == 1 and not decisions.exists()


def test_a_port_in_use_and_posts_from_other_sites_are_refused(root, queue, tmp_path, capsys):
    server, thread = start(root, queue, tmp_path / "d.jsonl")
    port = server.server_address[1]
    decisions = tmp_path / "other.jsonl"
    argv = ["review", str(root), "--queue", str(queue), "--decisions", str(decisions), "--port", str(port)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--port {port} is in use" in err and err.count("\n") == 1 and not decisions.exists()
    request = urllib.request.Request(
        server.url + "api/decision",
        data=json.dumps({"index": 0, "decision": "flip"}).encode(),
        headers={"Origin": "http://example.com"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert read_decisions(tmp_path / "d.jsonl").latest == {}
    post(server, "/api/stop", {})
    thread.join(10)


def test_decisions_of_another_dataset_are_refused_when_reopening(root, queue, tmp_path, capsys):
    other = write_test_root(tmp_path / "other", {("church", "test", "real"): [7]})
    decisions = tmp_path / "decisions.jsonl"
    server, thread = start(other, queue, decisions)
    post(server, "/api/stop", {})
    thread.join(10)
    before = decisions.read_bytes()
    assert main(["review", str(root), "--queue", str(queue), "--decisions", str(decisions)]) == 2
    assert "another dataset" in capsys.readouterr().err and decisions.read_bytes() == before


@pytest.mark.slow
def test_the_page_in_a_real_browser_keys_decisions_file_and_applied_revision(root, queue, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser, reason = _browser()
    if browser is None:
        pytest.skip(reason)
    decisions = tmp_path / "decisions.jsonl"
    server, thread = start(root, queue, decisions)
    labels = {s.key: s.cls for s in iter_samples(root, split="test")}
    wait = WebDriverWait(browser, 20)
    try:
        browser.get(server.url)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        image = browser.find_element(By.ID, "image")
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
        # the image is shown large, with its prompt-free record, label and both verdicts
        assert image.size["width"] >= 400 and image.get_attribute("data-index") == "0"
        assert browser.find_element(By.ID, "label").text == "pair (other); f makes it church"
        assert "judge-a" in browser.find_element(By.ID, "judges").text and "no judgement" in browser.page_source
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("f")
        wait.until(lambda b: "image 2 of 4" in b.find_element(By.ID, "position").text)
        body.send_keys("k")
        body.send_keys("s")
        wait.until(lambda b: "(3 decided)" in b.find_element(By.ID, "position").text)
        saved = [d["decision"] for d in read_decisions(decisions).latest.values()]
        assert saved == ["flip", "keep", "skip"]
        # closed and re-opened: the page continues at the fourth image
        post(server, "/api/stop", {})
        thread.join(10)
        server, thread = start(root, queue, decisions)
        browser.get(server.url)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        assert browser.find_element(By.ID, "image").get_attribute("data-index") == "3"
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.ARROW_LEFT)  # back to the skipped one, and flip it after all
        wait.until(lambda b: b.find_element(By.ID, "image").get_attribute("data-index") == "2")
        body.send_keys("f")
        body.send_keys("f")
        wait.until(lambda b: b.find_element(By.ID, "done").is_displayed())
        browser.find_element(By.ID, "stop").click()
        thread.join(10)
        assert not thread.is_alive()
        screenshot = Image.open(io.BytesIO(browser.get_screenshot_as_png()))
        assert screenshot.size[0] >= 1000
    finally:
        browser.quit()
        if thread.is_alive():
            server.shutdown()
    latest = {d["key"]: d["decision"] for d in read_decisions(decisions).latest.values()}
    assert latest == {"real_00001": "flip", "real_00002": "keep", "real_00003": "flip", "real_00004": "flip"}
    summary = apply_decisions(root, decisions)
    assert (summary.flipped, summary.confirmed) == (3, 1)
    after = {
        s.key: (s.cls, s.record["label_source"], s.record["previous_label"]) for s in iter_samples(root, split="test")
    }
    names = ("pair", "target")
    for key in QUEUED:
        flipped = latest[key] == "flip"
        assert after[key] == (1 - labels[key] if flipped else labels[key], "person", names[labels[key]])
    assert after["real_00005"] == (labels["real_00005"], None, None)


def raw(server: ReviewServer, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request as sent (any Host, any Content-Length): ``(status, JSON answer)``."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        headers = dict(headers or {})
        connection.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            if value is not None:  # {"Host": None}: no Host header at all
                connection.putheader(name, value)
        if body is not None and "Content-Length" not in headers:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        data = answer.read()
        return answer.status, (json.loads(data) if answer.getheader("Content-Type") == "application/json" else data)
    finally:
        connection.close()


def _decided(decisions: Path) -> dict:
    return read_decisions(decisions).latest


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"[1, 2]", {}, 400, "the body is not a JSON object"),
        (b'"flip"', {}, 400, "the body is not a JSON object"),
        (b"{", {}, 400, "the body is not JSON"),
        (b"\xff\xfe{}", {}, 400, "the body is not JSON"),
        (b"[" * 50_000, {}, 400, "the body is not JSON"),  # nested past the parser's recursion
        (b"{}", {"Content-Length": "two"}, 400, "Content-Length 'two' is not a number of bytes"),
        (b"{}", {"Content-Length": "-5"}, 400, "Content-Length '-5' is not a number of bytes"),
        (b"{}", {"Content-Length": "99999999999999"}, 413, "the body is larger than 65536 bytes"),
        (b'{"index": 0, "decision": "keep", "pad": "' + b"x" * 70_000 + b'"}', {}, 413, "larger than 65536"),
    ],
)
def test_a_bad_body_gets_an_answer_and_the_server_keeps_serving(root, queue, tmp_path, body, headers, status, message):
    decisions = tmp_path / "decisions.jsonl"
    server, thread = start(root, queue, decisions)
    try:
        code, answer = raw(server, "POST", "/api/decision", body, headers)
        assert (code, message in answer["error"]) == (status, True), answer
        assert json.loads(get(server, "/api/state"))["next"] == 0  # still serving
        assert post(server, "/api/decision", {"index": 0, "decision": "keep"})["next"] == 1
    finally:
        post(server, "/api/stop", {})
        thread.join(10)
    assert [d["decision"] for d in _decided(decisions).values()] == ["keep"]


@pytest.mark.parametrize("index", [-1, 4, 1.7, True, False, "1", None, [0]])
def test_an_index_that_is_not_an_integer_of_the_queue_is_refused(root, queue, tmp_path, index):
    decisions = tmp_path / "decisions.jsonl"
    server, thread = start(root, queue, decisions)
    try:
        code, answer = raw(server, "POST", "/api/decision", json.dumps({"index": index, "decision": "flip"}).encode())
        assert code == 400 and "index must be an integer from 0 to 3" in answer["error"], answer
        if not isinstance(index, str):  # "/image/1" is image 1: a path is text
            code, _ = raw(server, "GET", f"/image/{index}")
            assert code == 404
    finally:
        post(server, "/api/stop", {})
        thread.join(10)
    assert _decided(decisions) == {}  # -1, 1.7 and true were saved as decisions on items 3, 1 and 1


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("LocalHost:{port}", True),
        ("attacker.example:{port}", False),  # a rebinding page: its name now resolves to 127.0.0.1
        ("attacker.example", False),
        ("127.0.0.1:1", False),
        ("127.0.0.1", False),
        (None, False),
    ],
)
def test_only_requests_to_the_servers_own_address_are_answered(root, queue, tmp_path, host, allowed):
    decisions = tmp_path / "decisions.jsonl"
    server, thread = start(root, queue, decisions)
    port = server.server_address[1]
    headers = {"Host": host.format(port=port)} if host is not None else {"Host": None}
    try:
        for method, path, body in (
            ("GET", "/", None),
            ("GET", "/api/state", None),
            ("GET", "/image/0", None),
            ("POST", "/api/decision", b'{"index": 0, "decision": "flip"}'),
        ):
            code, answer = raw(server, method, path, body, headers)
            assert code == (200 if allowed else 403), (method, path, code)
            if not allowed:
                assert f"only http://127.0.0.1:{port}/ and http://localhost:{port}/ are served" in answer["error"]
    finally:
        post(server, "/api/stop", {})
        thread.join(10)
    assert len(_decided(decisions)) == (1 if allowed else 0)
