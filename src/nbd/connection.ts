/**
 * One NBD client connection, from greeting to close.
 *
 * Pipeline (transmission phase):
 *   socket read → RequestDecoder → next() → validateRequest (the one gate)
 *     → backend call (concurrent, up to NbdLimits.MAX_IN_FLIGHT per connection)
 *     → reply header (+ data) queued on a corked socket: every reply finished in the same turn
 *       of the event loop leaves in one writev; READ buffers return to a pool once sent.
 * Backpressure: reading pauses while NbdLimits.MAX_IN_FLIGHT requests run, while undecoded input exceeds
 * MAX_BUFFERED_INPUT, or while the socket's write buffer is full; it resumes as they clear.
 * Replies may go out of order (the spec allows it; cookies match them up).
 *
 * Input: either 'data' events (any Duplex: stdin/stdout, socket activation), or — for the
 * server's listeners — reads into buffers the connection supplies (net.Socket `onread`, see
 * {@link NbdConnection.readTarget}): a per-connection staging buffer, or the unfilled rest of a
 * large WRITE payload, so bulk writes land in their final buffer with no copy and no garbage.
 * Node's default allocates a fresh 64 KiB buffer per read, whose garbage collection cost more
 * CPU than the encryption on 1 MiB writes.
 *
 * Native data plane: when the backend offers direct I/O (BlockBackend.directIo) and the socket has
 * a descriptor, transmission is handed to an NbdLane (native/src/nbd_lane.cc) instead: its own
 * thread reads requests and serves unit-aligned READ/WRITE, and forwards every other request here
 * ('request' events), where it goes through the same gate and backend calls as above; replies go
 * back through the lane. That takes the event loop's wake-ups out of each request's round trip.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import type { BlockBackend, BlockCapabilities } from '../volume/backend.js';
import { oneLine } from '../common/errors.js';
import { socketFd } from '../common/socket-handle.js';
import { NbdLane, type IoLimiter, type NbdLaneEvent } from '../native/addon.js';
import {
  BASE_ALLOCATION_CONTEXT,
  NbdCmd,
  NbdCmdFlag,
  NbdErrno,
  NbdInfo,
  NbdLimits,
  NbdOpt,
  NbdReplyFlag,
  NbdRep,
  NbdState,
  NbdTxFlag,
  commandName,
  optionName,
} from './constants.js';
import { NbdOptionError, NbdProtocolError } from './errors.js';
import { ioBuffers } from './buffer-pool.js';
import { LATENCY_BUCKETS_SECONDS, type ExportIoStats } from './io-stats.js';
import { ExportRefusedError, type ExportCatalog, type ExportLease, type NbdExport, type NbdPeer } from './exports.js';
import {
  HandshakeReader,
  encodeAck,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeMetaContextReply,
  encodeOptionError,
  encodeServerGreeting,
  encodeServerReply,
  parseClientFlags,
  parseEmptyOption,
  parseExportNameData,
  parseInfoRequest,
  parseMetaContextRequest,
} from './handshake.js';
import {
  RequestDecoder,
  encodeBlockStatusChunk,
  encodeErrorChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeSimpleReply,
  toNbdErrno,
  validateRequest,
  type BlockStatusExtent,
  type NbdRequest,
  type RequestContext,
} from './transmission.js';

/** Undecoded input kept before reading pauses (two maximum payloads). */
const MAX_BUFFERED_INPUT = 2 * NbdLimits.MAX_PAYLOAD;
/** The only metadata context we offer, and its id. */
const BASE_ALLOCATION_ID = 1;
/** Largest READ/WRITE we accept (advertised as the maximum block size). */
const MAX_PAYLOAD = NbdLimits.MAX_PAYLOAD;

export interface ConnectionOptions {
  catalog: ExportCatalog;
  peer: NbdPeer;
  logger: Logger;
  /**
   * The socket reads into buffers from {@link NbdConnection.readTarget} and reports them to
   * {@link NbdConnection.received} (net.Socket `onread`) instead of emitting 'data'.
   */
  suppliedReadBuffers?: boolean;
  /**
   * 'native' (default): hand transmission to an NbdLane when the backend offers direct I/O and
   * the stream is a socket with a descriptor. 'js': always serve requests on the event loop.
   */
  dataPlane?: 'native' | 'js';
}

/** While a request waits for the volume's limiter, how often it looks for a change of the limits. */
const THROTTLE_RECHECK_MS = 100;

/** Staging buffer for reads that are not a large payload's direct target. */
const STAGING_BUFFER_SIZE = 128 * 1024;

/** Transmission flags derived from what the backend declares. */
export function transmissionFlags(caps: BlockCapabilities, structuredReplies: boolean): number {
  let flags = NbdTxFlag.HAS_FLAGS;
  if (caps.readOnly) flags |= NbdTxFlag.READ_ONLY;
  if (caps.canFlush) flags |= NbdTxFlag.SEND_FLUSH;
  if (caps.canFua) flags |= NbdTxFlag.SEND_FUA;
  if (!caps.readOnly && caps.canTrim) flags |= NbdTxFlag.SEND_TRIM;
  if (!caps.readOnly && caps.canZero) {
    flags |= NbdTxFlag.SEND_WRITE_ZEROES;
    if (caps.canFastZero) flags |= NbdTxFlag.SEND_FAST_ZERO;
  }
  if (structuredReplies) flags |= NbdTxFlag.SEND_DF;
  if (caps.canMultiConn) flags |= NbdTxFlag.CAN_MULTI_CONN;
  if (caps.canCache) flags |= NbdTxFlag.SEND_CACHE;
  return flags;
}

type Phase = 'handshake' | 'transmission' | 'closing';

export class NbdConnection {
  private phase: Phase = 'handshake';
  private readonly handshake = new HandshakeReader();
  private readonly decoder = new RequestDecoder({ maxPayload: MAX_PAYLOAD, allocate: (n) => ioBuffers.take(n) });
  private clientFlagsRead = false;
  private noZeroes = false;
  private structuredReplies = false;
  /** Export name → whether base:allocation was selected for it by SET_META_CONTEXT. */
  private metaContextExport: string | undefined;
  private lease: ExportLease | undefined;
  private backend: BlockBackend | undefined;
  private context: RequestContext | undefined;
  private stats: ExportIoStats | undefined;
  private limiter: IoLimiter | undefined;
  private inFlight = 0;
  /** Replies are being gathered for one writev (see send). */
  private corked = false;
  /** Resolved whenever inFlight drops to zero. */
  private idleWaiters: Array<() => void> = [];
  private busy = false;
  /** Handshake bytes arrived while an option was being processed. */
  private moreInput = false;
  private readonly log: Logger;
  private readonly finished: Promise<void>;
  private resolveFinished!: () => void;
  private disconnectRequested = false;
  private staging: Buffer | undefined;
  /** The last read target handed out when it was a WRITE payload (see readTarget). */
  private directTarget: Buffer | null = null;
  /** The native data plane serving this connection's transmission, if any. */
  private lane: NbdLane | undefined;
  /** Resolves once the lane's thread has ended (its descriptors closed). */
  private laneExited: Promise<void> | undefined;
  private onLaneExit: (() => void) | undefined;
  private detachLaneStats: (() => void) | undefined;

  constructor(
    private readonly socket: Duplex,
    private readonly options: ConnectionOptions,
  ) {
    this.log = options.logger;
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    if (!options.suppliedReadBuffers) socket.on('data', (chunk: Buffer) => this.onData(chunk, false));
    socket.on('drain', () => this.pump());
    socket.on('error', (err) => this.log.debug({ err: oneLine(err) }, 'socket error'));
    socket.on('close', () => void this.teardown());
    socket.on('end', () => {
      if (this.phase === 'handshake') socket.destroy();
    });
    socket.write(encodeServerGreeting());
  }

  /** Resolves when the connection is closed and its lease released. */
  get closed(): Promise<void> {
    return this.finished;
  }

  /** Stop reading new requests, let in-flight ones finish, then close (daemon shutdown). */
  shutdown(): void {
    if (this.phase !== 'transmission') {
      this.socket.destroy();
      return;
    }
    this.disconnectRequested = true;
    if (this.lane) this.lane.stopReading();
    else this.socket.pause();
    this.maybeFinishDisconnect();
  }

  // ------------------------------------------------------------------------------ input

  /** Where the socket's next read should land (suppliedReadBuffers mode). */
  readTarget(): Buffer {
    this.directTarget = this.phase === 'transmission' ? this.decoder.directReadTarget() : null;
    return this.directTarget ?? (this.staging ??= Buffer.allocUnsafe(STAGING_BUFFER_SIZE));
  }

  /** `n` bytes were read into `buf`, a buffer from readTarget (suppliedReadBuffers mode). */
  received(n: number, buf: Buffer): void {
    if (buf === this.directTarget) {
      this.directTarget = null;
      this.decoder.directReadDone(n);
      this.pump();
    } else this.onData(buf.subarray(0, n), true);
  }

  /** `transient`: the chunk's memory is reused after this call, so nothing may keep it. */
  private onData(chunk: Buffer, transient: boolean): void {
    if (this.phase === 'handshake') {
      this.handshake.push(transient ? Buffer.from(chunk) : chunk);
      void this.negotiate();
    } else if (this.phase === 'transmission') {
      this.decoder.push(chunk, transient);
      this.pump();
    }
  }

  // ------------------------------------------------------------------------------ handshake

  /** Process options one at a time; async steps (opening an export) pause the socket. */
  private async negotiate(): Promise<void> {
    if (this.busy) {
      this.moreInput = true;
      return;
    }
    this.busy = true;
    this.moreInput = false;
    try {
      if (!this.clientFlagsRead) {
        const flags = this.handshake.readClientFlags();
        if (!flags) return;
        this.clientFlagsRead = true;
        this.noZeroes = flags.noZeroes;
        if (!flags.fixedNewstyle) this.log.debug('client is not fixed-newstyle');
      }
      for (let opt = this.handshake.nextOption(); opt; opt = this.phase === 'handshake' ? this.handshake.nextOption() : null) {
        if (opt.kind === 'oversized') {
          if (opt.option === NbdOpt.EXPORT_NAME) throw new NbdProtocolError('NBD_OPTION_TOO_LARGE', 'oversized EXPORT_NAME');
          this.socket.write(encodeOptionError(opt.option, NbdRep.ERR_TOO_BIG, `option of ${opt.length} bytes is too large`));
          continue;
        }
        this.socket.pause();
        try {
          await this.handleOption(opt.option, opt.data);
        } catch (err) {
          if (err instanceof NbdOptionError) {
            this.socket.write(encodeOptionError(opt.option, err.replyType, err.message));
          } else if (err instanceof ExportRefusedError) {
            if (opt.option === NbdOpt.EXPORT_NAME) throw err;
            this.socket.write(encodeOptionError(opt.option, NbdRep.ERR_POLICY, err.message));
          } else {
            throw err;
          }
        } finally {
          // A lane reads the socket itself from now on.
          if (this.phase !== 'closing' && !this.lane) this.socket.resume();
        }
      }
    } catch (err) {
      this.log.info({ err: oneLine(err), peer: this.options.peer }, 'handshake failed; closing');
      this.phase = 'closing';
      this.socket.destroy();
    } finally {
      this.busy = false;
    }
    // Bytes that arrived while we were busy.
    if (this.phase === 'handshake' && this.moreInput) void this.negotiate();
  }

  private async handleOption(option: number, data: Buffer): Promise<void> {
    const { catalog } = this.options;
    switch (option) {
      case NbdOpt.EXPORT_NAME: {
        const name = parseExportNameData(data);
        const exp = catalog.lookup(name);
        if (!exp) throw new NbdProtocolError('NBD_UNKNOWN_EXPORT', `EXPORT_NAME for unknown export '${name}'`);
        const { size, capabilities } = exp.describe();
        await this.enterTransmission(exp, capabilities);
        this.socket.write(encodeExportNameReply(BigInt(size), this.context!.txFlags, this.noZeroes));
        this.startTransmission();
        return;
      }
      case NbdOpt.INFO:
      case NbdOpt.GO: {
        const request = parseInfoRequest(option, data);
        const exp = catalog.lookup(request.name);
        if (!exp) throw new NbdOptionError(`no export named '${request.name}'`, NbdRep.ERR_UNKNOWN);
        const { size, capabilities } = exp.describe();
        if (option === NbdOpt.GO) await this.enterTransmission(exp, capabilities);
        const txFlags = transmissionFlags(capabilities, this.structuredReplies);
        const replies = [encodeInfoExport(option, BigInt(size), txFlags)];
        for (const info of request.infoTypes) {
          if (info === NbdInfo.NAME) replies.push(encodeInfoName(option, exp.name));
          if (info === NbdInfo.DESCRIPTION && exp.description) replies.push(encodeInfoDescription(option, exp.description));
          if (info === NbdInfo.BLOCK_SIZE) {
            replies.push(encodeInfoBlockSize(option, capabilities.minBlock, capabilities.preferredBlock, MAX_PAYLOAD));
          }
        }
        replies.push(encodeAck(option));
        this.writeAll(replies);
        if (option === NbdOpt.GO) this.startTransmission();
        return;
      }
      case NbdOpt.LIST:
        parseEmptyOption(option, data);
        this.writeAll([...catalog.list().map((e) => encodeServerReply(e.name, e.description)), encodeAck(option)]);
        return;
      case NbdOpt.ABORT:
        this.socket.write(encodeAck(option));
        this.endGracefully();
        return;
      case NbdOpt.STRUCTURED_REPLY:
        parseEmptyOption(option, data);
        this.structuredReplies = true;
        this.socket.write(encodeAck(option));
        return;
      case NbdOpt.LIST_META_CONTEXT:
      case NbdOpt.SET_META_CONTEXT: {
        const request = parseMetaContextRequest(option, data);
        if (option === NbdOpt.SET_META_CONTEXT && !this.structuredReplies) {
          throw new NbdOptionError('SET_META_CONTEXT needs structured replies first', NbdRep.ERR_INVALID);
        }
        const exp = catalog.lookup(request.exportName);
        if (!exp) throw new NbdOptionError(`no export named '${request.exportName}'`, NbdRep.ERR_UNKNOWN);
        const offered = exp.describe().capabilities.canExtents;
        // An empty LIST query means "everything you have"; "base:" lists the namespace.
        const wanted =
          offered &&
          (option === NbdOpt.LIST_META_CONTEXT
            ? request.queries.length === 0 || request.queries.some((q) => q === 'base:' || q === BASE_ALLOCATION_CONTEXT)
            : request.queries.includes(BASE_ALLOCATION_CONTEXT));
        const replies: Buffer[] = [];
        if (wanted) replies.push(encodeMetaContextReply(option, BASE_ALLOCATION_ID, BASE_ALLOCATION_CONTEXT));
        if (option === NbdOpt.SET_META_CONTEXT) this.metaContextExport = wanted ? exp.name : undefined;
        replies.push(encodeAck(option));
        this.writeAll(replies);
        return;
      }
      case NbdOpt.STARTTLS:
        throw new NbdOptionError('TLS is not offered: use the Unix socket, or a private network', NbdRep.ERR_UNSUP);
      default:
        throw new NbdOptionError(`option ${optionName(option)} is not supported`, NbdRep.ERR_UNSUP);
    }
  }

  /** Open the export for this connection and fix the negotiated request context. */
  private async enterTransmission(exp: NbdExport, capabilities: BlockCapabilities): Promise<void> {
    this.lease = await exp.open(this.options.peer);
    this.backend = this.lease.backend;
    this.stats = exp.stats;
    this.limiter = exp.limiter;
    const txFlags = transmissionFlags(capabilities, this.structuredReplies);
    this.context = {
      exportSize: BigInt(this.backend.size),
      txFlags,
      structuredReplies: this.structuredReplies,
      metaContextIds: new Set(this.metaContextExport === exp.name ? [BASE_ALLOCATION_ID] : []),
      minBlock: capabilities.minBlock,
      maxPayload: MAX_PAYLOAD,
      readOnly: capabilities.readOnly,
    };
    this.log.debug({ export: exp.name, peer: this.options.peer, txFlags }, 'client entered transmission');
  }

  private startTransmission(): void {
    this.phase = 'transmission';
    const early = this.handshake.takeRemaining();
    if (this.startLane(early)) return;
    for (const rest of early) this.decoder.push(rest);
    this.pump();
  }

  /** Hands transmission to a native data plane if possible; false: serve it here. */
  private startLane(early: Buffer[]): boolean {
    const direct = this.options.dataPlane !== 'js' && this.options.suppliedReadBuffers ? this.backend?.directIo?.() : undefined;
    const fd = this.socket instanceof net.Socket ? socketFd(this.socket) : undefined;
    // Handshake replies still queued in the JS socket would be overtaken by the lane's.
    if (!direct || fd === undefined || this.socket.writableLength > 0) return false;
    const ctx = this.context!;
    this.socket.pause();
    try {
      this.lane = new NbdLane(
        {
          socketFd: fd,
          fileFd: direct.fd,
          rbdImage: direct.rbd,
          cipher: direct.cipher,
          unit: direct.unit,
          size: Number(ctx.exportSize),
          maxPayload: MAX_PAYLOAD,
          maxDiscard: NbdLimits.MAX_WRITE_DISCARD,
          structured: this.structuredReplies,
          readOnly: ctx.readOnly || (ctx.txFlags & NbdTxFlag.READ_ONLY) !== 0,
          latencyBuckets: LATENCY_BUCKETS_SECONDS,
          initialInput: Buffer.concat(early),
          ...(this.limiter ? { limiter: this.limiter } : {}),
        },
        (event) => this.onLaneEvent(event),
      );
    } catch (err) {
      this.log.warn({ err: oneLine(err) }, 'native data plane unavailable; serving on the event loop');
      return false;
    }
    const lane = this.lane;
    this.laneExited = new Promise((resolve) => (this.onLaneExit = resolve));
    this.detachLaneStats = this.stats?.attach(() => lane.takeStats());
    return true;
  }

  private onLaneEvent(event: NbdLaneEvent): void {
    switch (event.kind) {
      case 'request': {
        const { kind: _, ...req } = event;
        this.inFlight++;
        void this.execute(req).finally(() => {
          if (--this.inFlight === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
          if (this.disconnectRequested) this.maybeFinishDisconnect();
        });
        return;
      }
      case 'end':
        if (event.reason === 'violation' || event.reason === 'error') {
          if (event.reason === 'violation') this.log.info({ err: event.message, peer: this.options.peer }, 'protocol violation; closing');
          else this.log.debug({ err: event.message }, 'socket error');
          this.phase = 'closing';
          this.lane!.close();
        } else {
          this.disconnectRequested = true;
          this.maybeFinishDisconnect();
        }
        return;
      case 'exit':
        this.detachLaneStats?.();
        this.onLaneExit!();
        this.socket.destroy();
        return;
    }
  }

  private writeAll(buffers: Buffer[]): void {
    this.socket.cork();
    for (const b of buffers) this.socket.write(b);
    this.socket.uncork();
  }

  // ------------------------------------------------------------------------------ transmission

  /** Start as many decoded requests as the limits allow; pause or resume reading accordingly. */
  private pump(): void {
    if (this.phase !== 'transmission' || this.lane) return;
    const writeBlocked = (this.socket as { writableNeedDrain?: boolean }).writableNeedDrain === true;
    while (!this.disconnectRequested && this.inFlight < NbdLimits.MAX_IN_FLIGHT && !writeBlocked) {
      let request: NbdRequest | null;
      try {
        request = this.decoder.next();
      } catch (err) {
        this.log.info({ err: oneLine(err), peer: this.options.peer }, 'protocol violation; closing');
        this.phase = 'closing';
        this.socket.destroy();
        return;
      }
      if (!request) break;
      if (request.type === NbdCmd.DISC) {
        this.disconnectRequested = true;
        break;
      }
      this.inFlight++;
      void this.execute(request).finally(() => {
        if (--this.inFlight === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
        if (this.disconnectRequested) this.maybeFinishDisconnect();
        else this.pump();
      });
    }
    const saturated = this.inFlight >= NbdLimits.MAX_IN_FLIGHT || writeBlocked || this.decoder.bufferedBytes > MAX_BUFFERED_INPUT;
    if (this.disconnectRequested) {
      this.socket.pause();
      this.maybeFinishDisconnect();
    } else if (saturated) this.socket.pause();
    else this.socket.resume();
  }

  private maybeFinishDisconnect(): void {
    if (this.inFlight > 0 || this.phase === 'closing') return;
    this.endGracefully();
  }

  /** Ends the connection once every reply already queued has left (DISC, ABORT, daemon stop). */
  private endGracefully(): void {
    this.phase = 'closing';
    if (this.lane) {
      this.lane.close();
      return;
    }
    // Close once the last replies are flushed, without waiting for the client's side: an idle
    // QEMU reads the socket only when it has a request out, so it would never answer our FIN
    // (and a daemon stop would wait for nothing while its guests' disks are paused).
    this.socket.end(() => this.socket.destroy());
  }

  /** Runs one request, and records it for metrics: plain numbers, nothing allocated per request. */
  private async execute(req: NbdRequest): Promise<void> {
    // The volume's limits (a lane's requests went through them in the lane); the wait is not
    // latency, as in the lane.
    const limiter = this.lane ? undefined : this.limiter;
    if (limiter && (req.type === NbdCmd.READ || req.type === NbdCmd.WRITE)) {
      const generation = limiter.generation();
      const wait = limiter.reserve(req.length);
      if (wait > 0) await this.throttled(limiter, req.length, generation, wait);
    }
    const started = performance.now();
    let errno = 0;
    try {
      errno = await this.perform(req);
    } finally {
      this.stats?.record(req.type, req.length, (performance.now() - started) / 1000, errno);
    }
  }

  /**
   * Waits out a request's reservation (`wait` seconds, under limits `generation`). As in the
   * lane, a live change of the limits (volume modify) is seen within THROTTLE_RECHECK_MS and the wait
   * is reserved again under the new limits.
   */
  private async throttled(limiter: IoLimiter, length: number, generation: number, wait: number): Promise<void> {
    for (;;) {
      const due = performance.now() + wait * 1000;
      for (let left = wait * 1000; left > 0; left = due - performance.now()) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(left, THROTTLE_RECHECK_MS)));
        if (limiter.generation() !== generation) break;
      }
      if (performance.now() >= due) return;
      generation = limiter.generation();
      wait = limiter.reserve(length);
      if (wait <= 0) return;
    }
  }

  /** Validates, runs and answers one request; resolves to the errno of its reply (0: success). */
  private async perform(req: NbdRequest): Promise<number> {
    const ctx = this.context!;
    const rejection = validateRequest(req, ctx);
    if (rejection) {
      this.log.debug({ cmd: commandName(req.type), offset: req.offset, length: req.length, why: rejection.message }, 'request rejected');
      this.replyError(req, rejection.errno, rejection.message);
      return rejection.errno;
    }
    const backend = this.backend!;
    const offset = Number(req.offset);
    const fua = (req.flags & NbdCmdFlag.FUA) !== 0;
    try {
      switch (req.type) {
        case NbdCmd.READ: {
          const buf = ioBuffers.take(req.length);
          try {
            if (req.length > 0) await backend.read(offset, buf);
          } catch (err) {
            ioBuffers.give(buf);
            throw err;
          }
          this.replyRead(req, buf);
          return 0;
        }
        case NbdCmd.WRITE:
          try {
            if (req.length > 0) await backend.write(offset, req.payload!, { fua });
            else if (fua) await backend.flush();
          } finally {
            if (req.payloadAllocated) ioBuffers.give(req.payload!);
          }
          break;
        case NbdCmd.FLUSH:
          await backend.flush();
          break;
        case NbdCmd.TRIM:
          if (req.length > 0) await backend.trim(offset, req.length, { fua });
          break;
        case NbdCmd.WRITE_ZEROES:
          if (req.length > 0) {
            await backend.zero(offset, req.length, {
              fua,
              noHole: (req.flags & NbdCmdFlag.NO_HOLE) !== 0,
              fastZero: (req.flags & NbdCmdFlag.FAST_ZERO) !== 0,
            });
          }
          break;
        case NbdCmd.CACHE:
          if (req.length > 0) await backend.cache(offset, req.length);
          break;
        case NbdCmd.BLOCK_STATUS:
          await this.replyBlockStatus(req, backend, offset);
          return 0;
      }
      this.replyOk(req);
      return 0;
    } catch (err) {
      const errno = toNbdErrno(err, { fastZero: (req.flags & NbdCmdFlag.FAST_ZERO) !== 0, df: (req.flags & NbdCmdFlag.DF) !== 0 });
      if (errno !== NbdErrno.ENOTSUP) this.log.warn({ cmd: commandName(req.type), offset: req.offset, length: req.length, err: oneLine(err) }, 'request failed');
      this.replyError(req, errno, oneLine(err));
      return errno;
    }
  }


  private async replyBlockStatus(req: NbdRequest, backend: BlockBackend, offset: number): Promise<void> {
    const all = await backend.extents(offset, req.length);
    const extents: BlockStatusExtent[] = [];
    let covered = 0;
    for (const e of all) {
      if (e.length <= 0) continue;
      // Extents are u32; split larger ones (and stop once the request is covered).
      let left = Math.min(e.length, req.length - covered);
      const flags = (e.hole ? NbdState.HOLE : 0) | (e.zero ? NbdState.ZERO : 0);
      while (left > 0) {
        const len = Math.min(left, 0x80000000);
        const last = extents[extents.length - 1];
        if (last && last.flags === flags && last.length + len <= 0xffffffff) last.length += len;
        else extents.push({ length: len, flags });
        left -= len;
        covered += len;
      }
      if (covered >= req.length) break;
    }
    if (extents.length === 0) extents.push({ length: req.length, flags: 0 });
    const reqOne = (req.flags & NbdCmdFlag.REQ_ONE) !== 0;
    this.send([encodeBlockStatusChunk(NbdReplyFlag.DONE, req.cookie, BASE_ALLOCATION_ID, reqOne ? extents.slice(0, 1) : extents)]);
  }

  private replyRead(req: NbdRequest, data: Buffer): void {
    const recycle = () => ioBuffers.give(data);
    if (!this.structuredReplies) {
      this.send([encodeSimpleReply(req.cookie, 0), data], recycle);
    } else if (data.length === 0) {
      this.send([encodeNoneChunk(req.cookie)]);
    } else {
      this.send([encodeOffsetDataHeader(NbdReplyFlag.DONE, req.cookie, req.offset, data.length), data], recycle);
    }
  }

  private replyOk(req: NbdRequest): void {
    this.send([this.structuredReplies ? encodeNoneChunk(req.cookie) : encodeSimpleReply(req.cookie, 0)]);
  }

  private replyError(req: NbdRequest, errno: number, message: string): void {
    this.send([
      this.structuredReplies ? encodeErrorChunk(NbdReplyFlag.DONE, req.cookie, errno, message) : encodeSimpleReply(req.cookie, errno),
    ]);
  }

  /**
   * Queue a reply. Replies finished in the same turn of the event loop leave in one writev:
   * the socket is corked on the first and uncorked once I/O callbacks are done (setImmediate).
   * `written` runs when the socket has taken the last buffer (or failed).
   */
  private send(buffers: Buffer[], written?: () => void): void {
    if (this.lane) {
      this.lane.send(buffers); // copied
      written?.();
      return;
    }
    if (this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    const last = buffers.length - 1;
    buffers.forEach((b, i) => this.socket.write(b, i === last ? written : undefined));
  }

  private async teardown(): Promise<void> {
    this.phase = 'closing';
    // Requests already handed to the backend finish before the lease goes.
    if (this.inFlight > 0) await new Promise<void>((wake) => this.idleWaiters.push(wake));
    // The lane uses the backend's file and key until its thread ends.
    if (this.lane) {
      this.lane.close();
      await this.laneExited;
    }
    const lease = this.lease;
    this.lease = undefined;
    if (lease) {
      try {
        await lease.release();
      } catch (err) {
        this.log.warn({ err: oneLine(err) }, 'releasing export failed');
      }
    }
    this.resolveFinished();
  }
}
