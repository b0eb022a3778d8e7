// Errors the WAL raises at start-up. Corruption is never repaired silently: the message
// names the file and byte offset so an operator can inspect it (e.g. with `xxd -s`).

export class WalCorruptionError extends Error {
  override readonly name = "WalCorruptionError";
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`WAL corrupt: ${file} at byte offset ${offset}: ${reason}`);
  }
}

export class WalNotFoundError extends Error {
  override readonly name = "WalNotFoundError";
  constructor(readonly dir: string) {
    super(`no WAL segments in ${dir}`);
  }
}

/** Raised to every caller once a write or fsync failed: the WAL's on-disk state is unknown. */
export class WalFailedError extends Error {
  override readonly name = "WalFailedError";
}
