"""Tests of the Python binding on SmolLM2 ($TMAC_MODEL, default models/...Q4_1.gguf).
Run: python3 -m unittest discover -s bindings/python (make test-bindings does)."""
import os
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

    def test_one_piece_per_token_and_load_time_limit_agrees(self):
        pieces = list(self.model.generate(PROMPT, max_tokens=10))
        self.assertEqual(len(pieces), 10)
        self.assertIn("Paris", "".join(pieces))
        with tmac.Model(MODEL, max_tokens=10) as limited:
            self.assertEqual("".join(limited.generate(PROMPT)), "".join(pieces))

    def test_reset_and_new_session_repeat_greedy_text(self):
        first = "".join(self.model.generate(PROMPT, max_tokens=6))
        self.model.reset()
        self.assertEqual("".join(self.model.generate(PROMPT, max_tokens=6)), first)
        with self.model.new_session() as other:
            self.assertEqual("".join(other.generate(PROMPT, max_tokens=6)), first)

    def test_seeded_sampling_repeats(self):
        self.model.set_sampling(temperature=1.0, top_k=20, top_p=0.9, seed=7)
        first = "".join(self.model.generate(PROMPT, max_tokens=8))
        self.model.reset()
        self.model.set_sampling(seed=7)
        self.assertEqual("".join(self.model.generate(PROMPT, max_tokens=8)), first)
        self.model.set_sampling(temperature=0.0)

    def test_chat(self):
        self.assertTrue("".join(self.model.generate("Name a fruit.", max_tokens=8, chat=True)))

    def test_info(self):
        info = self.model.info()
        self.assertEqual((info["architecture"], info["n_vocab"], info["n_layer"]),
                         ("llama", 49152, 30))
        self.assertRegex(tmac.version(), r"^\d+\.\d+\.\d+")

    def test_tables_flag(self):
        self.assertIn("exact tables", self.model.info()["kernel"])
        with tmac.Model(MODEL, flags=tmac.TMAC_FLAG_INT8_TABLES) as int8:
            self.assertIn("int8 tables", int8.info()["kernel"])
            self.assertIn("Paris", "".join(int8.generate(PROMPT, max_tokens=10)))

    def test_load_error_carries_last_error_message(self):
        with self.assertRaises(tmac.TmacError) as cm:
            tmac.Model("/nonexistent/model.gguf")
        self.assertEqual(cm.exception.status, -3)  # TMAC_ERR_IO
        self.assertIn("/nonexistent/model.gguf", str(cm.exception))

    def test_handle_error_carries_last_error_message(self):
        with tmac.Model(MODEL, n_ctx=8) as small:
            with self.assertRaises(tmac.TmacError) as cm:
                next(small.generate("one two three four five six seven eight nine ten"))
        self.assertEqual(cm.exception.status, -6)  # TMAC_ERR_CONTEXT_FULL
        self.assertTrue(str(cm.exception))

    def test_misuse(self):
        with self.assertRaises(TypeError):
            tmac.Model(MODEL, no_such_field=1)
        closed = tmac.Model(MODEL)
        closed.close()
        with self.assertRaises(tmac.TmacError):
            next(closed.generate(PROMPT))

    def test_tokens_stop_sequences_and_stop_reasons(self):
        ids = self.model.tokenize(PROMPT)
        self.assertEqual(self.model.detokenize(ids), PROMPT.encode())
        forged = "<|im_end|>"
        self.assertGreater(len(self.model.tokenize(forged)),
                           len(self.model.tokenize(forged, parse_special=True)))
        whole = "".join(self.model.generate(PROMPT, max_tokens=12))
        self.assertEqual(self.model.stop_reason(), "max_tokens")
        self.model.reset()
        cut = "".join(self.model.generate(PROMPT, max_tokens=12, stop=["Paris"]))
        self.assertEqual(cut, whole[: whole.index("Paris")])
        self.assertEqual(self.model.stop_reason(), "stop_sequence")

    def test_a_system_message_opens_no_reply(self):
        self.assertEqual(list(self.model.generate("Be brief.", chat=True, role="system")), [])
        self.assertTrue("".join(self.model.generate("Name a fruit.", max_tokens=8, chat=True)))


if __name__ == "__main__":
    unittest.main()
