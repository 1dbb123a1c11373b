"""Tests of the Python binding on SmolLM2 ($TMAC_MODEL, default models/...Q4_1.gguf).
Run: python3 -m unittest discover -s bindings/python (make test-bindings does; make
test-wheel runs them again against the wheel installed in a fresh virtualenv)."""
import os
import threading
import unittest

import tmac

MODEL = os.environ.get("TMAC_MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf")
PROMPT = "The capital of France is"


class TmacTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = tmac.Model(MODEL)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()

    def setUp(self):
        self.model.reset()

    def test_completions_are_independent(self):
        first = self.model(PROMPT, max_tokens=10)
        self.assertEqual(first["object"], "text_completion")
        text = first["choices"][0]["text"]
        self.assertIn("Paris", text)
        self.assertEqual(first["choices"][0]["finish_reason"], "length")
        self.assertEqual(first["usage"]["completion_tokens"], 10)
        self.assertGreater(first["usage"]["prompt_tokens"], 3)
        # many independent questions do not fill the context: each starts from an empty one
        with tmac.Model(MODEL, n_ctx=64) as small:
            for _ in range(12):
                again = small(PROMPT, max_tokens=10)
                self.assertEqual(again["choices"][0]["text"], text)

    def test_streaming_and_stop_sequences(self):
        whole = self.model(PROMPT, max_tokens=12)["choices"][0]["text"]
        chunks = list(self.model(PROMPT, max_tokens=12, stream=True))
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks), whole)
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")
        cut = self.model(PROMPT, max_tokens=12, stop=["Paris"])
        self.assertEqual(cut["choices"][0]["text"], whole[: whole.index("Paris")])
        self.assertEqual(cut["choices"][0]["finish_reason"], "stop")

    def test_chat_completion(self):
        msgs = [{"role": "system", "content": "You answer with one word."},
                {"role": "user", "content": "Name a fruit."}]
        r = self.model.create_chat_completion(messages=msgs, max_tokens=8)
        self.assertEqual(r["object"], "chat.completion")
        msg = r["choices"][0]["message"]
        self.assertEqual(msg["role"], "assistant")
        self.assertTrue(msg["content"])
        chunks = list(self.model.create_chat_completion(messages=msgs, max_tokens=8, stream=True))
        self.assertEqual(chunks[0]["choices"][0]["delta"], {"role": "assistant"})
        self.assertEqual("".join(c["choices"][0]["delta"].get("content", "") for c in chunks),
                         msg["content"])
        with self.assertRaises(ValueError):
            self.model.create_chat_completion(messages=[{"role": "system", "content": "x"}])

    def test_a_chat_keeps_its_conversation(self):
        with self.model.chat(system="Be brief.") as chat:
            a = chat.send("Name a fruit.", max_tokens=8)
            b = chat.send("Another one?", max_tokens=8)
            self.assertTrue(a and b)
            self.assertEqual([m["role"] for m in chat.messages],
                             ["system", "user", "assistant", "user", "assistant"])
            chat.reset()
            self.assertEqual(chat.send("Name a fruit.", max_tokens=8), a)

    def test_generate_goes_on_and_reset_forgets(self):
        first = "".join(self.model.generate(PROMPT, max_tokens=6))
        self.model.reset()
        self.assertEqual("".join(self.model.generate(PROMPT, max_tokens=6)), first)
        self.assertEqual(self.model.stop_reason(), "max_tokens")
        self.assertEqual(list(self.model.generate("Be brief.", chat=True, role="system")), [])

    def test_seeded_sampling_repeats(self):
        a = self.model(PROMPT, max_tokens=8, temperature=1.0, top_k=20, top_p=0.9, seed=7)
        b = self.model(PROMPT, max_tokens=8, temperature=1.0, top_k=20, top_p=0.9, seed=7)
        self.assertEqual(a["choices"][0]["text"], b["choices"][0]["text"])

    def test_tokens(self):
        ids = self.model.tokenize(PROMPT)
        self.assertEqual(self.model.detokenize(ids), PROMPT.encode())
        forged = "<|im_end|>"
        self.assertGreater(len(self.model.tokenize(forged)),
                           len(self.model.tokenize(forged, parse_special=True)))

    def test_info(self):
        info = self.model.info()
        self.assertEqual((info["architecture"], info["n_vocab"], info["n_layer"]),
                         ("llama", 49152, 30))
        self.assertRegex(tmac.version(), r"^\d+\.\d+\.\d+")

    def test_tables_flag(self):
        self.assertIn("exact tables", self.model.info()["kernel"])
        with tmac.Model(MODEL, flags=tmac.TMAC_FLAG_INT8_TABLES) as int8:
            self.assertIn("int8 tables", int8.info()["kernel"])
            self.assertIn("Paris", int8(PROMPT, max_tokens=10)["choices"][0]["text"])

    def test_threads_take_turns(self):
        want = self.model(PROMPT, max_tokens=6)["choices"][0]["text"]
        got, errors = [], []

        def worker():
            try:
                got.append(self.model(PROMPT, max_tokens=6)["choices"][0]["text"])
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(got, [want] * 4)

    def test_errors(self):
        with self.assertRaises(tmac.TmacError) as cm:
            tmac.Model("/nonexistent/model.gguf")
        self.assertEqual(cm.exception.status, -3)  # TMAC_ERR_IO
        self.assertIn("/nonexistent/model.gguf", str(cm.exception))
        with self.assertRaises(TypeError):
            tmac.Model(MODEL, 512)  # everything after the path is a keyword
        with self.assertRaises(TypeError):
            tmac.Model(MODEL, no_such_field=1)
        for bad in (dict(seed=-1), dict(n_ctx=-5), dict(top_p=2.0)):
            with self.assertRaises(ValueError):
                tmac.Model(MODEL, **bad)
        with self.assertRaises(tmac.TmacError):
            tmac.Model(MODEL, flags=1024)  # unknown flag bits: refused by the library
        with tmac.Model(MODEL, n_ctx=8) as small:
            with self.assertRaises(tmac.TmacError) as cm:
                small("one two three four five six seven eight nine ten")
        self.assertEqual(cm.exception.status, -6)  # TMAC_ERR_CONTEXT_FULL
        closed = tmac.Model(MODEL)
        closed.close()
        with self.assertRaises(tmac.TmacError):
            closed(PROMPT)


if __name__ == "__main__":
    unittest.main()
