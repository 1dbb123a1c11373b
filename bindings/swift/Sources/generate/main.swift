// generate: one prompt, one streamed answer (the Swift twin of examples-c/generate.c).
//
//   swift run generate [--chat] MODEL "PROMPT" [max_tokens]
import Foundation
import TMac

var args = Array(CommandLine.arguments.dropFirst())
let chat = args.first == "--chat"
if chat { args.removeFirst() }
guard args.count >= 2 else {
    FileHandle.standardError.write(Data("usage: generate [--chat] MODEL \"PROMPT\" [max_tokens]\n".utf8))
    exit(2)
}
do {
    let model = try TMac(path: args[0], maxTokens: args.count > 2 ? UInt32(args[2]) ?? 128 : 128)
    for try await piece in model.generate(args[1], chat: chat) {
        print(piece, terminator: "")
        fflush(stdout)
    }
    print()
} catch {
    FileHandle.standardError.write(Data("generate: \(error.localizedDescription)\n".utf8))
    exit(1)
}
