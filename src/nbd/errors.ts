/**
 * Errors raised by the NBD codec. Two kinds, because the server reacts differently:
 * - NbdProtocolError: the peer broke a MUST or is a DoS; the only safe reaction is a hard disconnect.
 * - NbdOptionError: a malformed option payload; reply with `replyType` and keep negotiating.
 */
import { NitrideError } from '../common/errors.js';
import { NbdRep } from './constants.js';

export type NbdProtocolErrorCode =
  /** Greeting/option/request magic is wrong: the stream is out of sync. */
  | 'NBD_BAD_MAGIC'
  /** Client flags contain a bit we do not know or did not advertise. */
  | 'NBD_BAD_CLIENT_FLAGS'
  /** Option data length above the discard limit. */
  | 'NBD_OPTION_TOO_LARGE'
  /** More options than one handshake may use. */
  | 'NBD_TOO_MANY_OPTIONS'
  /** WRITE payload above the discard limit. */
  | 'NBD_PAYLOAD_TOO_LARGE'
  /** The decoder was used in the wrong phase (a server bug, not the peer's). */
  | 'NBD_DECODER_STATE'
  /** NBD_OPT_EXPORT_NAME named an export we do not have (it has no error reply). */
  | 'NBD_UNKNOWN_EXPORT';

/** Fatal: the connection must be closed without a reply. */
export class NbdProtocolError extends NitrideError {
  declare readonly code: NbdProtocolErrorCode;
  constructor(code: NbdProtocolErrorCode, message: string) {
    super(message, code);
  }
}

export type NbdOptionErrorCode = 'NBD_OPTION_INVALID';

/**
 * Recoverable: answer the option with an error reply of `replyType` (message as its text) and
 * read the next option. After NBD_OPT_EXPORT_NAME no error reply exists: the server must disconnect.
 */
export class NbdOptionError extends NitrideError {
  declare readonly code: NbdOptionErrorCode;
  readonly replyType: number;
  constructor(message: string, replyType: number = NbdRep.ERR_INVALID) {
    super(message, 'NBD_OPTION_INVALID');
    this.replyType = replyType;
  }
}
