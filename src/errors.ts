/**
 * The one error class for every rejection of bad input: configs, weight files, tensors, options.
 * `source` names the file, tensor or field; `rule` says what was violated. The message carries both,
 * so a log line alone tells the user what to fix.
 */
export class AutoencoderKLError extends Error {
  readonly source: string;
  readonly rule: string;
  constructor(source: string, rule: string, options?: { cause?: unknown }) {
    super(`${source}: ${rule}`, options);
    this.name = "AutoencoderKLError";
    this.source = source;
    this.rule = rule;
  }
}

/** Thrown when an AbortSignal passed to encode/decode fires. */
export class AbortError extends Error {
  constructor(message = "The operation was aborted", options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AbortError";
  }
}
