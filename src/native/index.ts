/**
 * baton's native fd channel: unix sockets that carry fds between unrelated processes.
 * Linux only; the addon is loaded lazily, on first use, and throws an Error with code
 * 'ERR_BATON_NATIVE_UNAVAILABLE' where it cannot be loaded (see {@link isNativeAvailable}).
 *
 * @module
 */
export { isNativeAvailable, loadBinding, MAX_FDS_PER_MESSAGE } from './binding.js';
export type { NativeBinding, PollCallback, PollHandle, RawReceived } from './binding.js';
export { check, systemError } from './system-error.js';
export { closeFd, describeSocket, dupFd, growFdTable, peerCredentials } from './socket-info.js';
export type { PeerCredentials, SocketDescription } from './socket-info.js';
export { MAX_READS_PER_EVENT, READ_BUFFER_SIZE, UnixChannel } from './unix-channel.js';
export type { UnixChannelEvents } from './unix-channel.js';
export { ACCEPT_BACKOFF_MS, DEFAULT_BACKLOG, DEFAULT_SOCKET_MODE, UnixListener } from './unix-listener.js';
export type { UnixListenerEvents, UnixListenOptions } from './unix-listener.js';
