// Generate: one prompt, one streamed answer (the Kotlin twin of examples-c/generate.c).
//
//   java -Djna.library.path=target/release -cp generate.jar:jna.jar GenerateKt [--chat] MODEL "PROMPT" [max_tokens]
//
// Greedy (tmac's default sampling), so the output equals the C example's for the same arguments.
import kotlin.system.exitProcess
import tmac.Tmac
import tmac.TmacException

fun main(argv: Array<String>) {
    val chat = argv.isNotEmpty() && argv[0] == "--chat"
    val args = if (chat) argv.drop(1) else argv.toList()
    if (args.size < 2) {
        System.err.println("usage: Generate [--chat] MODEL \"PROMPT\" [max_tokens]")
        exitProcess(2)
    }
    try {
        // max_tokens as a load parameter, as the C example sets it (generate(maxTokens=) also works)
        Tmac.load(args[0]) { max_tokens = if (args.size > 2) args[2].toInt() else 128 }.use { model ->
            for (piece in model.generate(args[1], chat = chat)) {
                print(piece)
                System.out.flush()
            }
            println()
        }
    } catch (e: TmacException) {
        System.err.println("Generate: ${e.message}")
        exitProcess(1)
    }
}
