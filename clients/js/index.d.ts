// Type declarations of @chatscale/client (src/index.js): the whole public API.
import type { ManagerOptions, Socket, SocketOptions } from 'socket.io-client';

/** Every `code` a ChatError may carry. */
export type ErrorCodeValue =
  | 'bad_request'
  | 'invalid_room'
  | 'too_large'
  | 'too_many_rooms'
  | 'not_joined'
  | 'unavailable'
  | 'resume_too_old'
  | 'forbidden'
  | 'rate_limited'
  | 'unauthorized'
  | 'timeout'
  | 'closed'
  | 'bad_answer'
  | 'connect_error';

export declare const ErrorCode: Readonly<{
  BadRequest: 'bad_request';
  InvalidRoom: 'invalid_room';
  TooLarge: 'too_large';
  TooManyRooms: 'too_many_rooms';
  NotJoined: 'not_joined';
  Unavailable: 'unavailable';
  ResumeTooOld: 'resume_too_old';
  Forbidden: 'forbidden';
  RateLimited: 'rate_limited';
  Unauthorized: 'unauthorized';
  Timeout: 'timeout';
  Closed: 'closed';
  BadAnswer: 'bad_answer';
}>;

export declare class ChatError extends Error {
  constructor(code: ErrorCodeValue, message: string, extra?: { event?: string; retryAfterMs?: number; oldestRoomSeq?: number });
  readonly code: ErrorCodeValue;
  /** The event that was refused ('connect' for a refused handshake). */
  readonly event?: string;
  /** With 'rate_limited': how long to wait. */
  readonly retryAfterMs?: number;
  /** With 'resume_too_old': the oldest roomSeq the room log holds. */
  readonly oldestRoomSeq?: number;
}

export declare class TimeoutError extends ChatError {
  readonly code: 'timeout';
}

type Listener<T> = (payload: T) => void;

/** `message` as the server sends it. */
export interface ChatMessage {
  room: string;
  /** Absent while the server's store is unreachable (live only). */
  roomSeq?: number;
  id: string;
  from: string;
  text: string;
  ts: number;
  kind: 'chat' | 'ai-prompt';
  clientId?: string;
}

/** `ai-response-stream` as the server sends it. */
export interface AiChunk {
  room: string;
  roomSeq?: number;
  streamId: string;
  seq: number;
  chunk: string;
  done: boolean;
  error?: string;
  ts: number;
}

export interface ChatClientOptions {
  /** A JWT sent as `auth: {token}` at every handshake. */
  token?: string;
  /** Called at every handshake (reconnects too), for a fresh token. */
  getToken?: () => string | Promise<string>;
  /** Passed to io(): agent, transports, withCredentials, reconnectionDelayMax… */
  socketOptions?: Partial<ManagerOptions & SocketOptions> & Record<string, unknown>;
  /** How long an ack may take (10000). */
  ackTimeoutMs?: number;
  /** How long a live roomSeq gap may stay open before it is fetched from the log (3000). */
  gapTimeoutMs?: number;
  /** How long the Socket.IO CONNECT may go unanswered before the transport is closed (5000). */
  connectAnswerMs?: number;
  /** Wait before reconnecting after a refused CONNECT without retryAfterMs (1000). */
  retryDelayMs?: number;
  /** The io() factory (default: socket.io-client's). */
  io?: (url: string | undefined, options: Record<string, unknown>) => Socket;
}

export interface ClientStats {
  duplicatesDropped: number;
  resumes: number;
  gapFetches: number;
  reconnects: number;
  /** Every disconnect reason, in order ('transport close', 'ping timeout', …). */
  disconnects: string[];
}

export interface ClientEvents {
  connected: { first: boolean; id: string | undefined };
  reconnecting: { attempt?: number; error?: ChatError };
  moved: { reconnectAfterMs?: number };
  'auth-expired': { message?: string };
  disconnected: { reason: string; willReconnect: boolean };
}

export interface RoomEvents {
  message: ChatMessage;
  answer: Answer;
  gap: { from: number; to: number; reason: string };
  reset: { roomSeq: number };
  resumed: { after: number; replayed: number; roomSeq: number; gap: boolean };
  'resume-failed': ChatError;
}

export interface AnswerChunk {
  text: string;
  seq: number;
  done: boolean;
  chunk: AiChunk;
}

export type Outcome = 'complete' | 'error' | 'interrupted' | 'abandoned';

export interface AnswerResult {
  text: string;
  outcome: Outcome;
  /** The server's reason when outcome is 'error' or 'interrupted'. */
  error?: string;
  /** Joined mid-answer: its start was before this client's join. */
  partial: boolean;
  /** Some chunks were lost in a gap the room log no longer held. */
  lossy: boolean;
}

export interface AnswerEvents {
  chunk: AnswerChunk;
  done: AnswerResult;
}

declare class Emitter<Events> {
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): this;
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): this;
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): this;
}

export declare class ChatClient extends Emitter<ClientEvents> {
  constructor(url?: string, options?: ChatClientOptions);
  readonly url: string | undefined;
  readonly rooms: Map<string, Room>;
  readonly stats: ClientStats;
  /** The socket.io-client socket, once connect() was called. */
  readonly socket: Socket | null;
  readonly connected: boolean;
  readonly closed: boolean;
  connect(): Promise<void>;
  join(name: string): Promise<Room>;
  /** Emits any event and resolves with the ack's `ok` value. */
  request<T = unknown>(event: string, payload: unknown, options?: { timeoutMs?: number }): Promise<T>;
  close(): void;
}

export interface SendResult {
  id: string;
  roomSeq?: number;
}

export declare class Room extends Emitter<RoomEvents> {
  readonly client: ChatClient;
  readonly name: string;
  /** The room's roomSeq when this client joined. */
  readonly joinedAt: number | null;
  /** The highest roomSeq up to which every event was delivered. */
  readonly lastSeq: number | null;
  readonly joined: boolean;
  readonly answers: Map<string, Answer>;
  send(text: string, options?: { clientId?: string }): Promise<SendResult>;
  ask(prompt: string): Promise<Answer>;
  leave(): Promise<void>;
}

export declare class Answer extends Emitter<AnswerEvents> implements AsyncIterable<string> {
  readonly room: Room;
  readonly streamId: string;
  /** The text so far. */
  readonly text: string;
  readonly chunks: number;
  readonly finished: boolean;
  readonly outcome?: Outcome;
  /** Asked by this client. */
  readonly mine: boolean;
  /** The roomSeq of the question (answers this client asked). */
  readonly questionSeq: number | null;
  readonly partial: boolean;
  readonly lossy: boolean;
  readonly done: Promise<AnswerResult>;
  [Symbol.asyncIterator](): AsyncIterator<string>;
}
