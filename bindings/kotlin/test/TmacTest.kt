// Tests of the Kotlin binding on SmolLM2: TmacTestKt MODEL (make test-bindings runs it).
import kotlin.system.exitProcess
import tmac.Tmac
import tmac.TmacException

private const val PROMPT = "The capital of France is"
private var passed = 0
private var failed = 0

private fun test(name: String, body: () -> Unit) {
    try {
        body()
        passed++
    } catch (e: Throwable) {
        failed++
        System.err.println("FAILED $name: $e")
    }
}

private fun expect(ok: Boolean, what: () -> String) { if (!ok) throw AssertionError(what()) }

private fun status(body: () -> Unit): TmacException? =
    try { body(); null } catch (e: TmacException) { e }

fun main(args: Array<String>) {
    val model = args[0]
    Tmac.load(model).use { m ->
        test("one piece per token; equals the load-time max_tokens") {
            val pieces = m.generate(PROMPT, maxTokens = 10).toList()
            expect(pieces.size == 10) { "${pieces.size} pieces" }
            val limited = Tmac.load(model) { max_tokens = 10 }.use { it.generate(PROMPT).joinToString("") }
            expect(limited == pieces.joinToString("")) { "'$limited' vs '${pieces.joinToString("")}'" }
        }
        test("reset and newSession repeat the greedy text") {
            m.reset()
            val first = m.generate(PROMPT, maxTokens = 6).joinToString("")
            m.reset()
            expect(m.generate(PROMPT, maxTokens = 6).joinToString("") == first) { "after reset" }
            m.newSession().use { expect(it.generate(PROMPT, maxTokens = 6).joinToString("") == first) { "session" } }
        }
        test("info") {
            val info = m.info()
            expect(info.architecture == "llama" && info.nVocab == 49152 && info.nLayer == 30) { "$info" }
            expect(info.kernel.contains("exact tables")) { info.kernel }
        }
        test("a system message opens no reply; the user message does") {
            m.reset()
            m.system("Be brief.")
            expect(m.generate("Name a fruit.", maxTokens = 6, chat = true).joinToString("").isNotEmpty()) { "no reply" }
        }
        test("camelCase params") {
            Tmac.load(model) { nCtx = 64; maxTokens = 3 }.use {
                expect(it.info().nCtx == 64) { "n_ctx ${it.info().nCtx}" }
                expect(it.generate(PROMPT).count() == 3) { "max tokens" }
            }
        }
    }
    test("load error carries tmac_last_error") {
        val e = status { Tmac.load("/nonexistent/model.gguf") }
        expect(e?.status == -3 && e.message!!.contains("/nonexistent/model.gguf")) { "$e" }
    }
    test("handle error carries tmac_last_error") {
        val e = Tmac.load(model) { n_ctx = 8 }.use { small ->
            status { small.generate("one two three four five six seven eight nine ten") }
        }
        expect(e?.status == -6 && !e.message.isNullOrEmpty()) { "$e" }
    }
    test("closed handle") {
        val closed = Tmac.load(model)
        closed.close()
        expect(status { closed.generate(PROMPT) } != null) { "no exception" }
    }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
