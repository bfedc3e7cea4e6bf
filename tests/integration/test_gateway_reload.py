"""`fanout serve` with workers: SIGHUP loads the gateway file again while
clients keep calling (no request fails), and a broken file keeps the
running configuration, with the errors in the log."""
import json
import signal
import threading
import time

from gwharness import GatewayCase
from harness import main, request


def config(up, name):
    return {"endpoints": [{"path": "/v", "backends": [
        {"name": name, "url": up + "/delay?ms=20", "select": ["value"]}]},
        {"path": "/slow", "backends": [{"name": name, "url": up + "/delay?ms=600"}]}]}


class Reload(GatewayCase):
    serve_args = ("--config", None, "--workers", "2")  # None: the file

    @classmethod
    def config(cls, up):
        return config(up, "one")

    def write(self, doc):
        with open(self.path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))

    def names(self):
        r = request(self.gw.port, "GET", "/v")
        return r.status, [k for k in r.json() if k != "_fanout"] if r.status == 200 else r.body

    def test_reload_under_load_fails_no_request(self):
        stop = threading.Event()
        results = []

        def client():
            while not stop.is_set():
                try:
                    results.append(self.names())
                except Exception as e:  # a refused or reset connection counts as a failure
                    results.append((0, repr(e)))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            self.write(config(self.up, "two"))
            self.gw.proc.send_signal(signal.SIGHUP)
            self.gw.wait_log(r"reloaded: 2 endpoints")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (not results or results[-1] != (200, ["two"])):
                time.sleep(0.05)
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        failed = [r for r in results if r[0] != 200]
        self.assertEqual(failed, [])
        seen = {tuple(r[1]) for r in results}
        self.assertEqual(seen, {("one",), ("two",)})
        self.assertGreater(len(results), 20)
        # a broken file: logged, and the running configuration stays
        self.write('{"endpoints": [{"path": "/v", "backends": [{"name": "x", "url": 5}]}]}')
        self.gw.proc.send_signal(signal.SIGHUP)
        self.gw.wait_log(r"gateway: .*gateway\.json:1:\d+: .*'url' must be a string")
        self.gw.wait_log(r"is not reloaded: the running configuration stays")
        time.sleep(0.3)
        self.assertEqual(self.names(), (200, ["two"]))


class ReloadOneProcess(Reload):
    """--workers 0: the process reloads itself; a request running across the
    reload ends on the configuration it began with."""
    serve_args = ("--workers", "0")

    def test_reload_under_load_fails_no_request(self):
        slow = []
        t = threading.Thread(target=lambda: slow.append(request(self.gw.port, "GET", "/slow")))
        t.start()
        time.sleep(0.2)
        self.write(config(self.up, "two"))
        self.gw.proc.send_signal(signal.SIGHUP)
        self.gw.wait_log(r"reloaded: 2 endpoints")
        self.assertEqual(self.names(), (200, ["two"]))
        t.join()
        self.assertEqual(slow[0].status, 200)
        self.assertEqual(list(slow[0].json()), ["one"])
        self.write("{")
        self.gw.proc.send_signal(signal.SIGHUP)
        self.gw.wait_log(r"is not reloaded: the running configuration stays")
        self.assertEqual(self.names(), (200, ["two"]))


if __name__ == "__main__":
    main()
