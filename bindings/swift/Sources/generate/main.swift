// generate: one prompt, one streamed answer (the Swift twin of examples-c/generate.c).
//
//   swift run generate MODEL "PROMPT" [max_tokens]
import Foundation
import TMac

let args = Array(CommandLine.arguments.dropFirst())
guard args.count >= 2 else {
    FileHandle.standardError.write(Data("usage: generate MODEL \"PROMPT\" [max_tokens]\n".utf8))
    exit(2)
}
do {
    let model = try TMac(path: args[0], maxTokens: args.count > 2 ? UInt32(args[2]) ?? 128 : 128)
    try model.generate(args[1]) { piece in
        print(piece, terminator: "")
        fflush(stdout)
    }
    print()
} catch {
    FileHandle.standardError.write(Data("generate: \(error)\n".utf8))
    exit(1)
}
