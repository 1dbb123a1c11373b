// tmac for Kotlin/JVM and Android: JNA direct mapping (Native.register) over libtmac.
//
//   Tmac.load("model.gguf").use { m -> m.generate("The capital of France is").forEach(::print) }
//
// Needs JNA 5 (net.java.dev.jna:jna; on Android the @aar) and libtmac.so where JNA looks: inside
// the jar as linux-x86-64/libtmac.so or linux-aarch64/libtmac.so (JNA's resource path; the
// Maven build, ../pom.xml, packs it there), -Djna.library.path=..., or jniLibs/<abi>/ in an APK.
// From Java: Tmac.load(path) or Tmac.load(path, p -> p.setNCtx(512)), camelCase accessors.
// Strings cross as NUL-terminated UTF-8 byte arrays, never through JNA's platform-encoding
// String conversion. A Tmac is one conversation: use it from one thread at a time.
// check_bindings.py compares the `external` declarations and the structures with include/tmac.h.
package tmac

import com.sun.jna.IntegerType
import com.sun.jna.Native
import com.sun.jna.Pointer
import com.sun.jna.Structure
import com.sun.jna.ptr.ByReference
import com.sun.jna.ptr.PointerByReference
import java.io.Closeable
import java.util.function.Consumer

const val TMAC_ABI_VERSION = 1
const val TMAC_OK = 0
const val TMAC_DONE = 1
const val TMAC_ERR_BUFFER_TOO_SMALL = -7
const val TMAC_ERR_STATE = -9
const val TMAC_FLAG_F32 = 1
const val TMAC_FLAG_SLIDING_WINDOW = 2
const val TMAC_FLAG_INT8_TABLES = 4
const val TMAC_FLAG_EXACT_TABLES = 8
const val TMAC_FLAG_PARSE_SPECIAL = 16
const val TMAC_FLAG_READ_ENV = 32
const val TMAC_FLAG_KV_F16 = 64
const val TMAC_ERR_ABORTED = -10

/** size_t: 8 bytes on arm64-v8a and x86_64, 4 on armeabi-v7a. */
class SizeT(value: Long = 0) : IntegerType(Native.SIZE_T_SIZE, value, true) {
    // kotlin.Number declares these abstract; java.lang.Number (IntegerType's base) does not.
    override fun toByte() = toLong().toByte()
    override fun toChar() = toLong().toChar()
    override fun toShort() = toLong().toShort()
}

/** size_t * (an out-parameter). */
class SizeTByReference : ByReference(Native.SIZE_T_SIZE) {
    val value: Long
        get() = if (Native.SIZE_T_SIZE == 8) pointer.getLong(0) else pointer.getInt(0).toLong()
}

/** struct tmac_params. Field names and order are the header's. */
@Structure.FieldOrder("struct_size", "n_ctx", "temperature", "top_p", "top_k", "min_p",
    "repeat_penalty", "reserved0", "seed", "max_tokens", "flags", "memory_budget_mib", "reserved1")
open class Params : Structure() {
    @JvmField var struct_size: Int = 0
    @JvmField var n_ctx: Int = 0
    @JvmField var temperature: Float = 0f
    @JvmField var top_p: Float = 0f
    @JvmField var top_k: Int = 0
    @JvmField var min_p: Float = 0f
    @JvmField var repeat_penalty: Float = 0f
    @JvmField var reserved0: Int = 0
    @JvmField var seed: Long = 0
    @JvmField var max_tokens: Int = 0
    @JvmField var flags: Int = 0
    @JvmField var memory_budget_mib: Int = 0
    @JvmField var reserved1: Int = 0

    // camelCase views of the C fields (JNA maps the fields above; these hold no state)
    var nCtx: Int get() = n_ctx; set(v) { n_ctx = v }
    var topP: Float get() = top_p; set(v) { top_p = v }
    var topK: Int get() = top_k; set(v) { top_k = v }
    var minP: Float get() = min_p; set(v) { min_p = v }
    var repeatPenalty: Float get() = repeat_penalty; set(v) { repeat_penalty = v }
    var maxTokens: Int get() = max_tokens; set(v) { max_tokens = v }
    var memoryBudgetMib: Int get() = memory_budget_mib; set(v) { memory_budget_mib = v }

    /** Returned by value from tmac_params_default(). */
    class ByValue : Params(), Structure.ByValue
}

/** What a model is (tmac_model_info), with Kotlin/Java names and strings. */
data class ModelInfo(
    val architecture: String,
    val kernel: String,
    val nVocab: Int,
    val nEmbd: Int,
    val nLayer: Int,
    val nHead: Int,
    val nHeadKv: Int,
    val nFf: Int,
    val nCtx: Int,
    val nCtxTrain: Int,
    val bitsPerWeight: Float,
    val fileSize: Long
)

/** struct tmac_info. */
@Structure.FieldOrder("struct_size", "n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv",
    "n_ff", "n_ctx", "n_ctx_train", "bits_per_weight", "file_size", "architecture", "kernel")
class Info : Structure() {
    @JvmField var struct_size: Int = 0
    @JvmField var n_vocab: Int = 0
    @JvmField var n_embd: Int = 0
    @JvmField var n_layer: Int = 0
    @JvmField var n_head: Int = 0
    @JvmField var n_head_kv: Int = 0
    @JvmField var n_ff: Int = 0
    @JvmField var n_ctx: Int = 0
    @JvmField var n_ctx_train: Int = 0
    @JvmField var bits_per_weight: Float = 0f
    @JvmField var file_size: Long = 0
    @JvmField var architecture: Pointer? = null
    @JvmField var kernel: Pointer? = null
}

/** The C functions, one static native method each (JNA direct mapping: no proxy per call). */
object TmacLib {
    init {
        Native.register(TmacLib::class.java, "tmac")
    }

    @JvmStatic external fun tmac_params_default(): Params.ByValue
    @JvmStatic external fun tmac_load(path: ByteArray, params: Params?, out: PointerByReference): Int
    @JvmStatic external fun tmac_new_session(t: Pointer, params: Params?, out: PointerByReference): Int
    @JvmStatic external fun tmac_prompt(t: Pointer, utf8: ByteArray, len: SizeT): Int
    @JvmStatic external fun tmac_prompt_chat(t: Pointer, role: ByteArray, utf8: ByteArray, len: SizeT): Int
    @JvmStatic external fun tmac_next_token(t: Pointer, buf: ByteArray, cap: SizeT, outLen: SizeTByReference): Int
    @JvmStatic external fun tmac_reset(t: Pointer): Int
    @JvmStatic external fun tmac_set_temperature(t: Pointer, temperature: Float): Int
    @JvmStatic external fun tmac_set_top_k(t: Pointer, topK: Int): Int
    @JvmStatic external fun tmac_set_top_p(t: Pointer, topP: Float): Int
    @JvmStatic external fun tmac_set_seed(t: Pointer, seed: Long): Int
    @JvmStatic external fun tmac_model_info(t: Pointer, info: Info): Int
    @JvmStatic external fun tmac_last_error(t: Pointer?): Pointer
    @JvmStatic external fun tmac_status_str(s: Int): Pointer
    @JvmStatic external fun tmac_version(): Pointer
    @JvmStatic external fun tmac_abi_version(): Int
    @JvmStatic external fun tmac_free(t: Pointer?)
}

/** A failed tmac call: `status` is the tmac_status code, the message tmac_last_error's. */
class TmacException(val status: Int, message: String) : RuntimeException(message)

private fun cString(s: String) = (s + "\u0000").toByteArray(Charsets.UTF_8)
private fun Pointer.utf8(): String = getString(0, "UTF-8")

/** A loaded model and one conversation on it. Close it (or `use { }`) to free it. */
class Tmac private constructor(private var handle: Pointer?) : Closeable {
    companion object {
        /** Loads a GGUF file. `configure` edits tmac_params_default() (greedy by default). */
        @JvmSynthetic
        fun load(path: String, configure: Params.() -> Unit = {}): Tmac {
            check(TmacLib.tmac_abi_version() == TMAC_ABI_VERSION) { "libtmac has another ABI" }
            val out = PointerByReference()
            val params = TmacLib.tmac_params_default().apply(configure)
            ok(TmacLib.tmac_load(cString(path), params, out), null)
            return Tmac(out.value)
        }

        /** Java: `Tmac.load(path)`. */
        @JvmStatic
        @JvmName("load")
        fun loadDefault(path: String): Tmac = load(path) {}

        /** Java: `Tmac.load(path, p -> p.setNCtx(512))`. */
        @JvmStatic
        @JvmName("load")
        fun loadConfigured(path: String, configure: Consumer<Params>): Tmac =
            load(path) { configure.accept(this) }

        @JvmStatic
        val version: String get() = TmacLib.tmac_version().utf8()

        internal fun ok(status: Int, t: Pointer?): Int {
            if (status < 0) throw TmacException(status, TmacLib.tmac_last_error(t).utf8())
            return status
        }
    }

    private fun live(): Pointer = handle ?: throw TmacException(TMAC_ERR_STATE, "closed")

    /** Another conversation on the same weights (shared, not reloaded). */
    fun newSession(configure: Params.() -> Unit = {}): Tmac {
        val out = PointerByReference()
        val params = TmacLib.tmac_params_default().apply(configure)
        ok(TmacLib.tmac_new_session(live(), params, out), handle)
        return Tmac(out.value)
    }

    /**
     * Feeds `prompt` (a user message through the chat template if `chat`) and streams the
     * reply piece by piece (iterate it once). The conversation goes on after it. `maxTokens` > 0
     * stops after that many tokens; 0 leaves it to the load-time max_tokens (0 there = until end
     * of text). The text is plain: control tokens in it are not parsed.
     */
    @JvmOverloads
    fun generate(prompt: String, maxTokens: Int = 0, chat: Boolean = false): Sequence<String> {
        val text = prompt.toByteArray(Charsets.UTF_8)
        val len = SizeT(text.size.toLong())
        ok(if (chat) TmacLib.tmac_prompt_chat(live(), cString("user"), text, len)
              else TmacLib.tmac_prompt(live(), text, len), handle)
        return sequence {
            // Big enough for any token's text, so each TMAC_OK piece is exactly one token.
            var buf = ByteArray(1024)
            val n = SizeTByReference()
            var count = 0
            while (maxTokens <= 0 || count < maxTokens) {
                val s = TmacLib.tmac_next_token(live(), buf, SizeT(buf.size.toLong()), n)
                if (s == TMAC_ERR_BUFFER_TOO_SMALL) { buf = ByteArray(n.value.toInt()); continue }
                if (ok(s, handle) == TMAC_DONE) break
                count++
                yield(String(buf, 0, n.value.toInt(), Charsets.UTF_8))
            }
        }.constrainOnce()
    }

    /** A system message for the chat template; it opens no reply (the next user message does). */
    fun system(text: String) {
        val b = text.toByteArray(Charsets.UTF_8)
        ok(TmacLib.tmac_prompt_chat(live(), cString("system"), b, SizeT(b.size.toLong())), handle)
    }

    /** Forgets the conversation; keeps the model and settings. */
    fun reset() { ok(TmacLib.tmac_reset(live()), handle) }

    /** What the model is. */
    fun info(): ModelInfo {
        val i = Info()
        i.struct_size = i.size()
        ok(TmacLib.tmac_model_info(live(), i), handle)
        return ModelInfo(
            i.architecture?.utf8() ?: "", i.kernel?.utf8() ?: "", i.n_vocab, i.n_embd, i.n_layer,
            i.n_head, i.n_head_kv, i.n_ff, i.n_ctx, i.n_ctx_train, i.bits_per_weight, i.file_size
        )
    }

    override fun close() {
        TmacLib.tmac_free(handle)
        handle = null
    }
}
