// tmac for Swift: a small wrapper over the C API (module CTMac, include/tmac.h).
import CTMac

/// A failed tmac call: the tmac_status code and tmac_last_error()'s message.
public struct TMacError: Error, CustomStringConvertible {
    public let status: Int32
    public let description: String
}

/// The tmac_status values used here. In C, tmac_status is an int32_t typedef beside an enum of
/// the same name; mirroring the values keeps this code independent of how Swift imports that
/// enum. bindings/check_bindings.py compares them with tmac.h.
enum Status {
    static let TMAC_OK: Int32 = 0
    static let TMAC_DONE: Int32 = 1
}

/// A loaded model and one conversation on it. Use it from one thread at a time.
public final class TMac {
    private let handle: OpaquePointer

    /// Loads a GGUF file; `maxTokens` caps each reply (0 = until end of text). Greedy sampling.
    public init(path: String, maxTokens: UInt32 = 0) throws {
        var params = tmac_params_default()
        params.max_tokens = maxTokens
        var out: OpaquePointer?
        let status = tmac_load(path, &params, &out)
        guard status == Status.TMAC_OK, let handle = out else {
            throw TMacError(status: status, description: String(cString: tmac_last_error(nil)))
        }
        self.handle = handle
    }

    deinit {
        tmac_free(handle)
    }

    /// Feeds `prompt` (a user message through the chat template if `chat`) and calls `onPiece`
    /// with each piece of the reply as it is generated. The conversation goes on afterwards.
    public func generate(_ prompt: String, chat: Bool = false, onPiece: (String) -> Void) throws {
        let len = prompt.utf8.count
        try check(chat ? tmac_prompt_chat(handle, "user", prompt, len)
                       : tmac_prompt(handle, prompt, len))
        var buf = [CChar](repeating: 0, count: 1024)
        let cap = buf.count
        var n = 0
        while true {
            let status = tmac_next_token(handle, &buf, cap, &n)
            if status == Status.TMAC_DONE { return }
            try check(status)
            onPiece(buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
    }

    private func check(_ status: Int32) throws {
        if status < 0 {
            throw TMacError(status: status, description: String(cString: tmac_last_error(handle)))
        }
    }
}
