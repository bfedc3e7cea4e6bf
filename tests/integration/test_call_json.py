"""fan_call_json() and fan_call_json_unique() on one call, asked in either
order: both give the same value for a body without duplicate keys; for a
body with one, the unique one gives NULL and fan_call_json() the value
with the last key's member; for a body that is not JSON, both NULL.

fan_call_json_number() reads a value fanout parses into the request's
arena for itself: the same number before and after the others are asked,
NaN (null here) for what is not a number member of an object, and the
value fan_call_json() gives after it is an ordinary one, which a handler
may keep past the request (under AddressSanitizer, an arena value handed
out would be a use after free when /json/kept writes it)."""
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


    def number(self, text, then=None, key=None, keep=False):
        url = self.app.url("/json/text?text=" + quote(text, safe=""))
        path = f"/json/number?url={quote(url, safe='')}"
        path += f"&then={then}" if then else ""
        path += f"&key={key}" if key else ""
        path += "&keep=1" if keep else ""
        r = request(self.app.port, "GET", path)
        self.assertEqual(r.status, 200, r.body)
        return json.loads(r.body)

    def test_a_number_reads_the_same_before_and_after_the_value_is_asked(self):
        body = '{"value": 0.13340459861502951, "other": [1, 2, {"x": "y"}]}'
        for then in (None, "json", "unique"):
            with self.subTest(then=then):
                j = self.number(body, then)
                self.assertEqual(j["number"], 0.13340459861502951)
                self.assertTrue(j["again"])
                self.assertEqual(j["after"], 0.13340459861502951)
                self.assertEqual(j["json"], json.loads(body) if then else None)

    def test_what_is_not_a_number_member_reads_as_nan(self):
        for text, key in (('{"a": ', None), ('[0.5]', None), ('{"value": "0.5"}', None),
                          ('{"value": 0.5}', "missing"), ("", None)):
            with self.subTest(text=text, key=key):
                j = self.number(text, "json", key)
                self.assertIsNone(j["number"])
                self.assertTrue(j["again"])
                self.assertIsNone(j["after"])

    def test_a_duplicate_key_reads_as_its_last_member(self):
        j = self.number('{"value": 1, "value": 2}', "unique")
        self.assertEqual((j["number"], j["after"], j["json"]), (2, 2, None))

    def test_the_value_asked_after_a_number_outlives_the_request(self):
        body = '{"value": 7.5, "list": ["kept", {"deep": [1, 2, 3]}]}'
        self.number(body, "json", keep=True)
        for i in range(20):  # other requests reuse the memory the first one had
            self.number('{"value": %d, "filler": "%s"}' % (i, "z" * 200), "json")
        r = request(self.app.port, "GET", "/json/kept")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(json.loads(r.body), json.loads(body))


if __name__ == "__main__":
    main()
