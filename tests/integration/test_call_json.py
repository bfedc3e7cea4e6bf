"""fan_call_json() and fan_call_json_unique() on one call, asked in either
order: both give the same value for a body without duplicate keys; for a
body with one, the unique one gives NULL and fan_call_json() the value
with the last key's member; for a body that is not JSON, both NULL."""
import json
from urllib.parse import quote

import harness
from harness import main, request


class CallJson(harness.AppSuite):
    def relay(self, text, unique):
        url = self.app.url("/json/text?text=" + quote(text, safe=""))
        r = request(self.app.port, "GET", f"/json/relay?unique={unique}&url={quote(url, safe='')}")
        self.assertEqual(r.status, 200, r.body)
        return json.loads(r.body)

    def test_a_body_without_duplicates_is_the_same_value_either_way(self):
        for unique in ("first", "after"):
            with self.subTest(unique=unique):
                j = self.relay('{"a": 1, "b": [2, {"c": 3}]}', unique)
                self.assertEqual(j, {"json": {"a": 1, "b": [2, {"c": 3}]},
                                     "unique": {"a": 1, "b": [2, {"c": 3}]}, "same": True})

    def test_a_duplicate_key_gives_no_unique_value_either_way(self):
        for unique in ("first", "after"):
            with self.subTest(unique=unique):
                j = self.relay('{"a": 1, "n": {"k": 1, "k": 2}}', unique)
                self.assertEqual(j, {"json": {"a": 1, "n": {"k": 2}}, "unique": None,
                                     "same": False})

    def test_a_body_that_is_not_json_gives_nothing(self):
        for unique in ("first", "after"):
            with self.subTest(unique=unique):
                self.assertEqual(self.relay('{"a": ', unique),
                                 {"json": None, "unique": None, "same": False})


if __name__ == "__main__":
    main()
