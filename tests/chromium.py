"""A real headless Chromium driven over the DevTools protocol (stdlib WebSocket client), for page tests.

``Browser(tmp).open(url)`` loads a page; ``evaluate(js)`` runs script in it; ``screenshot()`` returns the
page as an RGB numpy array (decoded with OpenCV). The browser runs with no network beyond what the page asks
for (no background traffic, no component updates) and a throwaway profile.
"""

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.request

import numpy as np

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--mute-audio"]


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevToolsSocket:
    """A minimal RFC 6455 client: masked text frames out, whole frames in."""

    def __init__(self, url, timeout=30.0):
        host, port, path = re.match(r"ws://([^:/]+):(\d+)(/.*)", url).groups()
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall("GET {} HTTP/1.1\r\nHost: {}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n".format(
                              path, host, port, key).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head

    def _recv(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return data

    def send(self, obj):
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(payload)
        header = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n) \
            if n < 65536 else struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self):
        message = b""
        while True:
            first, second = self._recv(2)
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._recv(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._recv(8))
            message += self._recv(n)
            if first & 0x80:
                return json.loads(message)


class Browser:
    def __init__(self, workdir, width=800, height=600):
        self.profile = os.path.join(str(workdir), "chromium-profile")
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        if os.path.exists(port_file):
            os.remove(port_file)  # a previous browser's: wait for this one's
        self.proc = subprocess.Popen(
            [chromium_binary()] + CHROMIUM_FLAGS + ["--user-data-dir=" + self.profile,
                                                    "--remote-debugging-port=0",
                                                    "--window-size={},{}".format(width, height), "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while not os.path.exists(port_file) or len(open(port_file).read().split()) < 2:
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:{}/json/list".format(port), timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = DevToolsSocket(page["webSocketDebuggerUrl"])
        self._id = 0
        self.console = []
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method, **params):
        self._id += 1
        self.ws.send({"id": self._id, "method": method, "params": params})
        while True:
            reply = self.ws.receive()
            if reply.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value")) for a in reply["params"]["args"]))
            elif reply.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: {}".format(reply["params"]["exceptionDetails"]))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError("{}: {}".format(method, reply["error"]))
                return reply.get("result", {})

    def open(self, url):
        self.call("Page.navigate", url=url)

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression, timeout=15.0):
        """Poll a JS expression until it is truthy; its value (or AssertionError with the console)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError("page never satisfied {!r}; console: {}".format(expression, self.console))

    def screenshot(self):
        import cv2

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return image[:, :, ::-1].copy()  # RGB

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
