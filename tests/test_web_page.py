"""The web page in a real browser (Playwright driving Debian's Chromium)."""

import socketserver
import threading
from collections.abc import Iterator

import pytest
from conftest import TIMEOUT

from gchat.web.wire import Page, WebConnection


class _Static(socketserver.BaseRequestHandler):
    """The web layer alone, over plain sockets: the page without a chat behind it."""

    page: Page

    def handle(self) -> None:
        conn = WebConnection(self.page)
        while True:
            data = self.request.recv(65536)
            out = conn.receive(data)
            self.request.sendall(out.send)
            if out.close or not data:
                return


@pytest.fixture
def static_server() -> Iterator[str]:
    handler = type("Handler", (_Static,), {"page": Page.load(frozenset(), secure=False, max_message=4096)})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_page_loads_under_its_content_security_policy_with_no_error(chromium, static_server):
    context = chromium.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(static_server + "/", timeout=TIMEOUT * 1000)
        page.wait_for_selector("#composer input", timeout=TIMEOUT * 1000)
        assert page.title() == "gchat"
        assert errors == []
    finally:
        context.close()
