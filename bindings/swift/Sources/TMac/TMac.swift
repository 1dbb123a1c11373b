// tmac for Swift: a small wrapper over the C API (module CTMac, include/tmac.h).
//
//   let model = try TMac(path: "model.gguf", maxTokens: 64)
//   for try await piece in model.generate("Name a fruit.", chat: true) { print(piece, terminator: "") }
import CTMac
import Foundation

/// A failed tmac call: the tmac_status code and tmac_last_error()'s message.
public struct TMacError: Error, LocalizedError, CustomStringConvertible {
    public let status: Int32
    public let message: String
    public var errorDescription: String? { message }
    public var description: String { "tmac error \(status): \(message)" }
}

/// The tmac_status and tmac_stop values used here. In C each is an int32_t typedef beside an
/// enum of the same name; mirroring the values keeps this code independent of how Swift
/// imports those enums. bindings/check_bindings.py compares them with tmac.h.
enum Status {
    static let TMAC_OK: Int32 = 0
    static let TMAC_DONE: Int32 = 1
    static let TMAC_ERR_ABORTED: Int32 = -10
    static let TMAC_STOP_END_OF_TEXT: Int32 = 1
    static let TMAC_STOP_MAX_TOKENS: Int32 = 2
    static let TMAC_STOP_CONTEXT_FULL: Int32 = 3
    static let TMAC_STOP_SEQUENCE: Int32 = 4
    static let TMAC_STOP_ABORTED: Int32 = 5
}

/// Why the last generation ended.
public enum StopReason: Sendable {
    case none, endOfText, maxTokens, contextFull, stopSequence, cancelled

    init(_ raw: Int32) {
        switch raw {
        case Status.TMAC_STOP_END_OF_TEXT: self = .endOfText
        case Status.TMAC_STOP_MAX_TOKENS: self = .maxTokens
        case Status.TMAC_STOP_CONTEXT_FULL: self = .contextFull
        case Status.TMAC_STOP_SEQUENCE: self = .stopSequence
        case Status.TMAC_STOP_ABORTED: self = .cancelled
        default: self = .none
        }
    }
}

/// Set by a stream's cancellation, read by the generating thread and by the C abort callback
/// (which stops a long prompt between batches of tokens).
private final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return set }
    func cancel() { lock.lock(); set = true; lock.unlock() }
}

/// A loaded model and one conversation on it. Calls from several threads or tasks take turns
/// (a lock per handle); a stream holds the handle until it ends.
public final class TMac: @unchecked Sendable {
    private let handle: OpaquePointer
    private let lock = NSLock()

    /// Loads a model file (GGUF, llama2.c, T-MAC, tmac). `contextLength` 0 = the model's;
    /// `maxTokens` caps each reply (0 = until end of text); `temperature` 0 = greedy.
    public init(path: String, contextLength: UInt32 = 0, maxTokens: UInt32 = 0,
                temperature: Float = 0, seed: UInt64? = nil) throws {
        var params = tmac_params_default()
        params.n_ctx = contextLength
        params.max_tokens = maxTokens
        params.temperature = temperature
        if let seed = seed { params.seed = seed }
        var out: OpaquePointer?
        let status = tmac_load(path, &params, &out)
        guard status == Status.TMAC_OK, let handle = out else {
            throw TMacError(status: status, message: String(cString: tmac_last_error(nil)))
        }
        self.handle = handle
    }

    deinit {
        tmac_free(handle)
    }

    /// Streams the reply to `prompt` (a user message through the model's chat template if
    /// `chat`, else plain text to continue), piece by piece, generated on a thread of its own.
    /// Cancelling the consuming task (or dropping the stream) stops generation, also during a
    /// long prompt. The conversation goes on afterwards.
    public func generate(_ prompt: String, chat: Bool = false) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let flag = CancelFlag()
            continuation.onTermination = { termination in
                if case .cancelled = termination { flag.cancel() }
            }
            let worker = Thread { [self] in
                do {
                    try self.run(prompt, chat: chat, cancel: flag) { continuation.yield($0) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            worker.start()
        }
    }

    /// The same, synchronously: `onPiece` gets each piece of the reply as it is generated.
    public func generate(_ prompt: String, chat: Bool = false, onPiece: (String) -> Void) throws {
        try run(prompt, chat: chat, cancel: nil, onPiece: onPiece)
    }

    /// Sets the system message of the conversation (before its first user message, or after
    /// `reset()`); nothing is generated for it.
    public func system(_ text: String) throws {
        try locked { try check(tmac_prompt_chat(handle, "system", text, text.utf8.count)) }
    }

    /// Forgets the conversation; keeps the model and settings.
    public func reset() throws {
        try locked { try check(tmac_reset(handle)) }
    }

    /// Replies end before any of these strings (which are not part of them).
    public func setStop(_ stops: [String]) throws {
        let copies: [UnsafeMutablePointer<CChar>?] = stops.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let cstrs = copies.map { UnsafePointer($0) }
        try locked { try check(tmac_set_stop(handle, cstrs, cstrs.count)) }
    }

    /// Why the last reply ended.
    public var stopReason: StopReason {
        locked { StopReason(tmac_stop_reason(handle)) }
    }

    private func run(_ prompt: String, chat: Bool, cancel: CancelFlag?,
                     onPiece: (String) -> Void) throws {
        try locked {
            if let cancel = cancel {
                // The abort callback reads the flag through user_data; `cancel` outlives the
                // prompt call because this frame holds it, and the callback is removed after.
                let user = Unmanaged.passUnretained(cancel).toOpaque()
                try check(tmac_set_abort(handle, { data in
                    guard let data = data else { return 0 }
                    return Unmanaged<CancelFlag>.fromOpaque(data).takeUnretainedValue().isSet ? 1 : 0
                }, user))
            }
            defer { if cancel != nil { _ = tmac_set_abort(handle, nil, nil) } }
            let len = prompt.utf8.count
            let fed = chat ? tmac_prompt_chat(handle, "user", prompt, len)
                           : tmac_prompt(handle, prompt, len)
            if fed == Status.TMAC_ERR_ABORTED && cancel?.isSet == true { return }  // cancelled
            try check(fed)
            var buf = [CChar](repeating: 0, count: 1024)
            let cap = buf.count
            var n = 0
            while !(cancel?.isSet ?? false) {
                let status = tmac_next_token(handle, &buf, cap, &n)
                if status == Status.TMAC_DONE { return }
                try check(status)
                onPiece(buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
            }
        }
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    private func check(_ status: Int32) throws {
        if status < 0 {
            throw TMacError(status: status, message: String(cString: tmac_last_error(handle)))
        }
    }
}
