"""`fanout mock`'s lists and echo, which the gateway tests use: ?items=N,
?ids=A,B&drop=B (in order, unknown ids left out) and ?echo=1 (the method,
path, decoded query, headers and body it received, parsed when JSON)."""
import json
import unittest

from harness import get_json, main, mock, request


class MockLists(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mock = mock()

    @classmethod
    def tearDownClass(cls):
        cls.mock.stop()

    def test_items(self):
        status, body = get_json(self.mock.port, "/l?items=3")
        self.assertEqual(status, 200)
        self.assertEqual([i["id"] for i in body["items"]], [1, 2, 3])
        self.assertIsInstance(body["items"][0]["value"], float)
        self.assertIsInstance(body["value"], float)

    def test_ids_and_drop(self):
        _, body = get_json(self.mock.port, "/l?ids=b,a%20x,c,d&drop=c,zz")
        self.assertEqual([i["id"] for i in body["items"]], ["b", "a x", "d"])
        _, body = get_json(self.mock.port, "/l?ids=")
        self.assertEqual(body["items"], [])

    def test_echo(self):
        r = request(self.mock.port, "POST", "/p/q?echo=1&x=a%26b",
                    headers=[("Content-Type", "application/json"), ("X-A", "1")],
                    body=json.dumps({"k": [1, 2]}).encode())
        e = r.json()["echo"]
        self.assertEqual((e["method"], e["path"]), ("POST", "/p/q"))
        self.assertEqual(e["query"], {"echo": "1", "x": "a&b"})
        self.assertEqual(e["headers"]["X-A"], "1")
        self.assertEqual(e["body"], {"k": [1, 2]})
        r = request(self.mock.port, "POST", "/p?echo=1", body=b"plain")
        self.assertEqual(r.json()["echo"]["body"], "plain")

    def test_status_and_delay_still_apply(self):
        r = request(self.mock.port, "GET", "/l?items=1&status=404")
        self.assertEqual(r.status, 404)
        self.assertEqual(len(r.json()["items"]), 1)


if __name__ == "__main__":
    main()
