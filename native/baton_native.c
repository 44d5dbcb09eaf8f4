/*
 * baton_native: a thin Node-API layer over the Linux syscalls that Node does not expose
 * publicly: unix stream sockets that carry fds (SCM_RIGHTS), socket introspection and a
 * libuv readiness poller.
 *
 * Conventions (relied on by the TypeScript wrapper in src/native):
 *   - A syscall failure is returned as a negative errno (a JS number). Nothing here throws
 *     for a failed syscall; exceptions are thrown only for JS arguments of the wrong type or
 *     range (a programming error in the caller).
 *   - Every fd this module creates has FD_CLOEXEC set, and every socket it creates is
 *     non-blocking.
 *   - EINTR is retried wherever retrying is correct.
 *   - Every napi_status is checked (NAPI_CALL); on failure the pending exception (or one made
 *     from napi_get_last_error_info) propagates to JS.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

/* Linux's SCM_MAX_FD: the most fds one SCM_RIGHTS message can carry. */
#define BATON_MAX_FDS 253

/* ---------------------------------------------------------------------------------------- */
/* Node-API error handling                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void baton_throw_last_error(napi_env env, napi_status status, const char* expr) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info* info = NULL;
  const char* message = NULL;
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL &&
      info->error_message != NULL) {
    message = info->error_message;
  }
  char buf[256];
  snprintf(buf, sizeof buf, "baton_native: %s failed (napi_status %d%s%s)", expr,
           (int)status, message ? ": " : "", message ? message : "");
  napi_throw_error(env, "ERR_BATON_NAPI", buf);
}

/* Evaluate a Node-API call; on failure make sure an exception is pending and return NULL. */
#define NAPI_CALL(env, call)                                   \
  do {                                                         \
    napi_status napi_call_status_ = (call);                    \
    if (napi_call_status_ != napi_ok) {                        \
      baton_throw_last_error((env), napi_call_status_, #call); \
      return NULL;                                             \
    }                                                          \
  } while (0)

/* Same, but jump to a cleanup label (used where fds must not leak). */
#define NAPI_CALL_GOTO(env, call, label)                       \
  do {                                                         \
    napi_status napi_call_status_ = (call);                    \
    if (napi_call_status_ != napi_ok) {                        \
      baton_throw_last_error((env), napi_call_status_, #call); \
      goto label;                                              \
    }                                                          \
  } while (0)

static napi_value make_int(napi_env env, int64_t value) {
  napi_value result;
  NAPI_CALL(env, napi_create_int64(env, value, &result));
  return result;
}

static napi_value make_neg_errno(napi_env env, int err) {
  return make_int(env, -(int64_t)err);
}

/* ---------------------------------------------------------------------------------------- */
/* Argument helpers: they throw a TypeError/RangeError and return false on bad input.       */
/* ---------------------------------------------------------------------------------------- */

static bool get_args(napi_env env, napi_callback_info info, size_t expected, napi_value* argv) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "napi_get_cb_info");
    return false;
  }
  if (argc < expected) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "baton_native: too few arguments");
    return false;
  }
  return true;
}

static bool get_int32_arg(napi_env env, napi_value value, const char* name, int32_t* out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) {
    char buf[128];
    snprintf(buf, sizeof buf, "baton_native: %s must be a number", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", buf);
    return false;
  }
  if (napi_get_value_int32(env, value, out) != napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "napi_get_value_int32");
    return false;
  }
  return true;
}

static bool get_fd_arg(napi_env env, napi_value value, int* out) {
  int32_t fd;
  if (!get_int32_arg(env, value, "fd", &fd)) return false;
  *out = fd;
  return true;
}

/* (fd, int32) arguments, the shape of several functions below. */
static bool get_fd_int32_args(napi_env env, napi_callback_info info, int* fd, const char* name,
                              int32_t* value) {
  napi_value argv[2];
  return get_args(env, info, 2, argv) && get_fd_arg(env, argv[0], fd) &&
         get_int32_arg(env, argv[1], name, value);
}

static bool get_bool_arg(napi_env env, napi_value value, const char* name, bool* out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_boolean) {
    char buf[128];
    snprintf(buf, sizeof buf, "baton_native: %s must be a boolean", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", buf);
    return false;
  }
  if (napi_get_value_bool(env, value, out) != napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "napi_get_value_bool");
    return false;
  }
  return true;
}

/* A Uint8Array (Buffer included): its bytes and length. */
static bool get_bytes_arg(napi_env env, napi_value value, uint8_t** data, size_t* length) {
  bool is_typedarray = false;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "baton_native: buffer must be a Buffer or Uint8Array");
    return false;
  }
  napi_typedarray_type type;
  void* ptr = NULL;
  size_t len = 0;
  if (napi_get_typedarray_info(env, value, &type, &len, &ptr, NULL, NULL) != napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "napi_get_typedarray_info");
    return false;
  }
  if (type != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "baton_native: buffer must be a Buffer or Uint8Array");
    return false;
  }
  *data = (uint8_t*)ptr;
  *length = len;
  return true;
}

/*
 * A filesystem socket path, copied into a sockaddr_un. Returns 0, or a negative errno that
 * the caller hands back to JS (ENAMETOOLONG, EINVAL for an empty path or an embedded NUL).
 * Returns 1 with an exception pending for a non-string argument.
 */
static int get_path_arg(napi_env env, napi_value value, struct sockaddr_un* addr,
                        socklen_t* addrlen) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "baton_native: path must be a string");
    return 1;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "napi_get_value_string_utf8");
    return 1;
  }
  if (len == 0) return -EINVAL;
  /* Keep room for the terminating NUL: a full-length sun_path is legal but unportable. */
  if (len >= sizeof addr->sun_path) return -ENAMETOOLONG;
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  size_t copied = 0;
  if (napi_get_value_string_utf8(env, value, addr->sun_path, sizeof addr->sun_path, &copied) !=
      napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "napi_get_value_string_utf8");
    return 1;
  }
  if (copied != len || strlen(addr->sun_path) != len) return -EINVAL; /* embedded NUL */
  *addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  return 0;
}

/* close(2) that preserves errno for the caller's error path. */
static void close_quietly(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

/* ---------------------------------------------------------------------------------------- */
/* Sockets                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* socketpair() -> [fd0, fd1] | -errno */
static napi_value baton_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  NAPI_CALL(env, napi_create_array_with_length(env, 2, &result));
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    return make_neg_errno(env, errno);
  }
  napi_value v0, v1;
  NAPI_CALL_GOTO(env, napi_create_int32(env, fds[0], &v0), fail);
  NAPI_CALL_GOTO(env, napi_create_int32(env, fds[1], &v1), fail);
  NAPI_CALL_GOTO(env, napi_set_element(env, result, 0, v0), fail);
  NAPI_CALL_GOTO(env, napi_set_element(env, result, 1, v1), fail);
  return result;
fail:
  close_quietly(fds[0]);
  close_quietly(fds[1]);
  return NULL;
}

/*
 * The start of every unix-socket function below: `path` parsed into `addr` (with
 * `abstract_ok`, a leading '@' names the abstract namespace, as sd_notify allows) and an
 * AF_UNIX socket of `type` opened (CLOEXEC added). Returns 0 with *fd set, a negative errno
 * to hand back to JS, or 1 with an exception pending.
 */
static int open_unix_socket(napi_env env, napi_value path, int type, bool abstract_ok,
                            struct sockaddr_un* addr, socklen_t* addrlen, int* fd) {
  int rc = get_path_arg(env, path, addr, addrlen);
  if (rc != 0) return rc;
  if (abstract_ok && addr->sun_path[0] == '@') {
    addr->sun_path[0] = '\0';
    *addrlen -= 1; /* abstract names are not NUL-terminated */
  }
  *fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  return *fd < 0 ? -errno : 0;
}

/* Closes fd and returns -errno (of the call that failed before) to JS. */
static napi_value close_and_fail(napi_env env, int fd) {
  close_quietly(fd);
  return make_neg_errno(env, errno);
}

/* unixListen(path, backlog, mode) -> fd | -errno. Does not unlink path on failure. */
static napi_value baton_unix_listen(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t backlog, mode;
  if (!get_args(env, info, 3, argv) || !get_int32_arg(env, argv[1], "backlog", &backlog) ||
      !get_int32_arg(env, argv[2], "mode", &mode)) {
    return NULL;
  }
  struct sockaddr_un addr;
  socklen_t addrlen = 0;
  int fd;
  int rc = open_unix_socket(env, argv[0], SOCK_STREAM | SOCK_NONBLOCK, false, &addr, &addrlen, &fd);
  if (rc > 0) return NULL;
  if (rc < 0) return make_int(env, rc);
  if (bind(fd, (struct sockaddr*)&addr, addrlen) != 0 ||
      /* Before listen(): nobody can connect while the mode is still the umask's. */
      chmod(addr.sun_path, (mode_t)mode & 07777) != 0 || listen(fd, backlog) != 0) {
    return close_and_fail(env, fd);
  }
  return make_int(env, fd);
}

/*
 * unixConnect(path) -> fd | -errno. A non-blocking connect: it never waits, so it may run on the
 * JS thread of a process that serves. An AF_UNIX stream connect completes at once when the
 * listener's backlog has room; when it is full Linux returns EAGAIN and nothing is in progress
 * (there is no EINPROGRESS for AF_UNIX, and poll() on the connecting socket says nothing of the
 * peer's backlog): the caller tries again, or waits off the JS thread with unixConnectWait.
 */
static napi_value baton_unix_connect(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct sockaddr_un addr;
  socklen_t addrlen = 0;
  int fd;
  int rc = open_unix_socket(env, argv[0], SOCK_STREAM | SOCK_NONBLOCK, false, &addr, &addrlen, &fd);
  if (rc > 0) return NULL;
  if (rc < 0) return make_int(env, rc);
  /* An interrupted AF_UNIX connect has not changed the socket's state: retrying is safe. */
  do {
    rc = connect(fd, (struct sockaddr*)&addr, addrlen);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return close_and_fail(env, fd);
  return make_int(env, fd);
}

/* One unixConnectWait in flight: filled on the JS thread, connected in the libuv thread pool. */
typedef struct {
  napi_async_work work;
  napi_ref callback;
  struct sockaddr_un addr;
  socklen_t addrlen;
  int64_t timeout_ms;
  int result; /* the connected fd, or -errno */
} baton_connect_wait;

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Thread pool: a blocking connect bounded by SO_SNDTIMEO, which Linux's AF_UNIX connect honours
 * while it waits for room in the listener's backlog (woken when the listener accepts, not
 * polled). It gives up with EAGAIN once the time is out: reported as ETIMEDOUT.
 */
static void connect_wait_execute(napi_env env, void* data) {
  (void)env;
  baton_connect_wait* w = data;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    w->result = -errno;
    return;
  }
  const int64_t deadline = monotonic_ms() + w->timeout_ms;
  int rc;
  for (;;) {
    int64_t left = deadline - monotonic_ms();
    if (left < 1) left = 1; /* a zero SO_SNDTIMEO would mean "wait for ever" */
    struct timeval tv = {.tv_sec = (time_t)(left / 1000), .tv_usec = (suseconds_t)((left % 1000) * 1000)};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) break;
    rc = connect(fd, (struct sockaddr*)&w->addr, w->addrlen);
    if (rc == 0) {
      /* Writes of the channel must not inherit the timeout; it is non-blocking from now on. */
      struct timeval none = {0, 0};
      int flags = fcntl(fd, F_GETFL);
      if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none) != 0 || flags < 0 ||
          fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        break;
      }
      w->result = fd;
      return;
    }
    /* Interrupted: the socket is unchanged, wait for what is left of the time. */
    if (errno == EINTR && monotonic_ms() < deadline) continue;
    if (errno == EAGAIN || errno == EINTR) errno = ETIMEDOUT;
    break;
  }
  w->result = -errno;
  close_quietly(fd);
}

/* JS thread: hands the result to the callback (which then owns the fd), then frees everything. */
static void connect_wait_complete(napi_env env, napi_status status, void* data) {
  baton_connect_wait* w = data;
  int result = status == napi_cancelled ? -ECANCELED : w->result;
  napi_value callback, global, arg, ignored;
  bool called = false;
  if (napi_get_reference_value(env, w->callback, &callback) == napi_ok && callback != NULL &&
      napi_get_global(env, &global) == napi_ok && napi_create_int64(env, result, &arg) == napi_ok) {
    /* A callback that throws is reported as an uncaught exception by Node; it got the fd. */
    napi_status call = napi_call_function(env, global, callback, 1, &arg, &ignored);
    called = call == napi_ok || call == napi_pending_exception;
  }
  if (!called && result >= 0) close(result); /* nobody can own it */
  napi_delete_reference(env, w->callback);
  napi_delete_async_work(env, w->work);
  free(w);
}

/*
 * unixConnectWait(path, timeoutMs, callback) -> 0 | -errno. Connects to `path` in the libuv
 * thread pool, waiting up to timeoutMs (at least 1) for room in the listener's backlog, so the
 * JS thread never blocks; then calls callback(fd | -errno) on the JS thread. The fd (non-blocking,
 * CLOEXEC) is the callback's to own. -errno synchronously for a bad path (nothing is queued).
 * Each call holds one thread-pool thread while it waits.
 */
static napi_value baton_unix_connect_wait(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t timeout_ms;
  if (!get_args(env, info, 3, argv) || !get_int32_arg(env, argv[1], "timeoutMs", &timeout_ms)) return NULL;
  napi_valuetype type;
  NAPI_CALL(env, napi_typeof(env, argv[2], &type));
  if (type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "baton_native: callback must be a function");
    return NULL;
  }
  baton_connect_wait* w = calloc(1, sizeof *w);
  if (w == NULL) return make_neg_errno(env, ENOMEM);
  int rc = get_path_arg(env, argv[0], &w->addr, &w->addrlen);
  if (rc != 0) {
    free(w);
    return rc > 0 ? NULL : make_int(env, rc);
  }
  w->timeout_ms = timeout_ms < 1 ? 1 : timeout_ms;
  napi_value name;
  NAPI_CALL_GOTO(env, napi_create_string_utf8(env, "baton:unixConnectWait", NAPI_AUTO_LENGTH, &name), fail);
  NAPI_CALL_GOTO(env, napi_create_reference(env, argv[2], 1, &w->callback), fail);
  NAPI_CALL_GOTO(env, napi_create_async_work(env, NULL, name, connect_wait_execute, connect_wait_complete, w, &w->work), fail_ref);
  NAPI_CALL_GOTO(env, napi_queue_async_work(env, w->work), fail_work);
  return make_int(env, 0);
fail_work:
  napi_delete_async_work(env, w->work);
fail_ref:
  napi_delete_reference(env, w->callback);
fail:
  free(w);
  return NULL;
}

/* datagramSend(path, buffer) -> bytes sent | -errno. One AF_UNIX datagram from a fresh socket. */
static napi_value baton_datagram_send(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint8_t* data = NULL;
  size_t length = 0;
  if (!get_args(env, info, 2, argv) || !get_bytes_arg(env, argv[1], &data, &length)) return NULL;
  struct sockaddr_un addr;
  socklen_t addrlen = 0;
  int fd;
  int rc = open_unix_socket(env, argv[0], SOCK_DGRAM, true, &addr, &addrlen, &fd);
  if (rc > 0) return NULL;
  if (rc < 0) return make_int(env, rc);
  ssize_t sent;
  do {
    sent = sendto(fd, data, length, MSG_NOSIGNAL, (struct sockaddr*)&addr, addrlen);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return close_and_fail(env, fd);
  close(fd);
  return make_int(env, sent);
}

/* datagramBind(path) -> fd | -errno. A non-blocking AF_UNIX datagram socket bound at path (mode 0600). */
static napi_value baton_datagram_bind(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  struct sockaddr_un addr;
  socklen_t addrlen = 0;
  int fd;
  int rc = open_unix_socket(env, argv[0], SOCK_DGRAM | SOCK_NONBLOCK, true, &addr, &addrlen, &fd);
  if (rc > 0) return NULL;
  if (rc < 0) return make_int(env, rc);
  if (bind(fd, (struct sockaddr*)&addr, addrlen) != 0 ||
      (addr.sun_path[0] != '\0' && chmod(addr.sun_path, 0600) != 0)) {
    return close_and_fail(env, fd);
  }
  return make_int(env, fd);
}

/* accept(fd) -> fd | -errno */
static napi_value baton_accept(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd_arg(env, argv[0], &fd)) return NULL;
  int client;
  do {
    client = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (client < 0 && errno == EINTR);
  if (client < 0) return make_neg_errno(env, errno);
  return make_int(env, client);
}

/* The (fd, buffer, ...) prologue of the socket I/O calls: `argc` arguments, argv[0] an fd, argv[1] bytes. */
static bool get_fd_bytes_args(napi_env env, napi_callback_info info, size_t argc, napi_value* argv, int* fd,
                              uint8_t** data, size_t* data_len) {
  return get_args(env, info, argc, argv) && get_fd_arg(env, argv[0], fd) &&
         get_bytes_arg(env, argv[1], data, data_len);
}

/* sendmsg(fd, buffer, offset, length, fds) -> bytes sent | -errno */
static napi_value baton_sendmsg(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int fd;
  uint8_t* data = NULL;
  size_t data_len = 0;
  if (!get_fd_bytes_args(env, info, 5, argv, &fd, &data, &data_len)) return NULL;
  int32_t offset, length;
  if (!get_int32_arg(env, argv[2], "offset", &offset)) return NULL;
  if (!get_int32_arg(env, argv[3], "length", &length)) return NULL;
  if (offset < 0 || length < 0 || (size_t)offset > data_len ||
      (size_t)length > data_len - (size_t)offset) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "baton_native: offset/length outside the buffer");
    return NULL;
  }
  bool is_array = false;
  NAPI_CALL(env, napi_is_array(env, argv[4], &is_array));
  if (!is_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "baton_native: fds must be an array");
    return NULL;
  }
  uint32_t nfds = 0;
  NAPI_CALL(env, napi_get_array_length(env, argv[4], &nfds));
  if (nfds > BATON_MAX_FDS) return make_neg_errno(env, EINVAL);
  /* fds ride on the bytes: a zero-length stream message would silently drop them. */
  if (nfds > 0 && length == 0) return make_neg_errno(env, EINVAL);

  int fds[BATON_MAX_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value element;
    NAPI_CALL(env, napi_get_element(env, argv[4], i, &element));
    int32_t value;
    if (!get_int32_arg(env, element, "fds[i]", &value)) return NULL;
    fds[i] = value;
  }

  union {
    char buf[CMSG_SPACE(sizeof(int) * BATON_MAX_FDS)];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);

  struct iovec iov = {.iov_base = data + offset, .iov_len = (size_t)length};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  ssize_t sent;
  do {
    sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) return make_neg_errno(env, errno);
  return make_int(env, sent);
}

/*
 * peek(fd, buffer) -> bytes copied | -errno (-EAGAIN: nothing queued; 0: EOF)
 *
 * recv(MSG_PEEK | MSG_DONTWAIT): copies what the kernel holds for a connected socket without
 * consuming it, so the bytes stay for whoever reads the socket next (the process it migrates
 * to). Used to check that an HTTP/2 connection's unread bytes start at a frame boundary.
 */
static napi_value baton_peek(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint8_t* data = NULL;
  size_t data_len = 0;
  if (!get_fd_bytes_args(env, info, 2, argv, &fd, &data, &data_len)) return NULL;
  ssize_t n;
  do {
    n = recv(fd, data, data_len, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return make_neg_errno(env, errno);
  return make_int(env, (int32_t)n);
}

/* recvmsg(fd, buffer) -> { bytes, fds, ctrunc } | -errno. bytes 0 is EOF. */
static napi_value baton_recvmsg(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  uint8_t* data = NULL;
  size_t data_len = 0;
  if (!get_fd_bytes_args(env, info, 2, argv, &fd, &data, &data_len)) return NULL;

  union {
    char buf[CMSG_SPACE(sizeof(int) * BATON_MAX_FDS)];
    struct cmsghdr align;
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = data_len};
  struct msghdr msg;
  ssize_t received;
  do {
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    received = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (received < 0 && errno == EINTR);
  if (received < 0) return make_neg_errno(env, errno);

  /* Collect every fd that arrived, whatever happens next, so none can leak. */
  int fds[BATON_MAX_FDS];
  uint32_t nfds = 0;
  for (struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(cmsg);
    for (size_t i = 0; i < count; i++) {
      int value;
      memcpy(&value, p + i * sizeof(int), sizeof(int));
      if (nfds < BATON_MAX_FDS) {
        fds[nfds++] = value;
      } else {
        close(value); /* cannot happen with a 253-fd control buffer; never leak */
      }
    }
  }
  bool ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;

  napi_value result, fd_array, value;
  NAPI_CALL_GOTO(env, napi_create_object(env, &result), fail);
  NAPI_CALL_GOTO(env, napi_create_array_with_length(env, nfds, &fd_array), fail);
  for (uint32_t i = 0; i < nfds; i++) {
    NAPI_CALL_GOTO(env, napi_create_int32(env, fds[i], &value), fail);
    NAPI_CALL_GOTO(env, napi_set_element(env, fd_array, i, value), fail);
  }
  NAPI_CALL_GOTO(env, napi_create_int64(env, received, &value), fail);
  NAPI_CALL_GOTO(env, napi_set_named_property(env, result, "bytes", value), fail);
  NAPI_CALL_GOTO(env, napi_set_named_property(env, result, "fds", fd_array), fail);
  NAPI_CALL_GOTO(env, napi_get_boolean(env, ctrunc, &value), fail);
  NAPI_CALL_GOTO(env, napi_set_named_property(env, result, "ctrunc", value), fail);
  return result;
fail:
  for (uint32_t i = 0; i < nfds; i++) close_quietly(fds[i]);
  return NULL;
}

/* close(fd) -> 0 | -errno */
static napi_value baton_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd_arg(env, argv[0], &fd)) return NULL;
  /* On Linux the fd is released even when close() reports EINTR: never retry. */
  if (close(fd) != 0 && errno != EINTR) return make_neg_errno(env, errno);
  return make_int(env, 0);
}

/* dup(fd) -> new fd (>= 3, CLOEXEC) | -errno */
static napi_value baton_dup(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd_arg(env, argv[0], &fd)) return NULL;
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return make_neg_errno(env, errno);
  return make_int(env, copy);
}

/*
 * growFdTable(fd, slots) -> slots now available (capped at RLIMIT_NOFILE) | -errno
 *
 * Makes the kernel's fd table of this process hold at least `slots` fds, by duplicating `fd`
 * into the highest of them and closing the copy at once. Why: the table grows by doubling
 * when an fd beyond it is allocated, and in a multi-threaded process (Node always is) each
 * growth waits for an RCU grace period (expand_fdtable -> synchronize_rcu), 5-20 ms each. A
 * process about to receive thousands of fds pays that once, ahead of time, instead of about
 * ten times while it receives them. The table never shrinks; the copy never outlives this call.
 */
static napi_value baton_grow_fd_table(napi_env env, napi_callback_info info) {
  int fd;
  int32_t slots;
  if (!get_fd_int32_args(env, info, &fd, "slots", &slots)) return NULL;
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return make_neg_errno(env, errno);
  if (limit.rlim_cur != RLIM_INFINITY && (rlim_t)slots > limit.rlim_cur) slots = (int32_t)limit.rlim_cur;
  if (slots <= 3) return make_int(env, slots < 0 ? 0 : slots);
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, slots - 1);
  if (copy < 0) return make_neg_errno(env, errno);
  close_quietly(copy);
  return make_int(env, slots);
}

/* peerCredentials(fd) -> { pid, uid, gid } | -errno */
static napi_value baton_peer_credentials(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd_arg(env, argv[0], &fd)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return make_neg_errno(env, errno);
  }
  napi_value result, value;
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_int64(env, cred.pid, &value));
  NAPI_CALL(env, napi_set_named_property(env, result, "pid", value));
  NAPI_CALL(env, napi_create_int64(env, cred.uid, &value));
  NAPI_CALL(env, napi_set_named_property(env, result, "uid", value));
  NAPI_CALL(env, napi_create_int64(env, cred.gid, &value));
  NAPI_CALL(env, napi_set_named_property(env, result, "gid", value));
  return result;
}

static bool set_string(napi_env env, napi_value object, const char* key, const char* str,
                       size_t len) {
  napi_value value;
  if (napi_create_string_utf8(env, str, len, &value) != napi_ok ||
      napi_set_named_property(env, object, key, value) != napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "set_string");
    return false;
  }
  return true;
}

/* Sets `addrKey` and `portKey` of `result` from an inet/inet6 sockaddr; other families set nothing. */
static bool set_inet_address(napi_env env, napi_value result, const struct sockaddr_storage* ss,
                             const char* addrKey, const char* portKey) {
  char text[INET6_ADDRSTRLEN];
  unsigned port;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in* sin = (const struct sockaddr_in*)ss;
    if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text) == NULL) return true;
    port = ntohs(sin->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6* sin6 = (const struct sockaddr_in6*)ss;
    if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text) == NULL) return true;
    port = ntohs(sin6->sin6_port);
  } else {
    return true;
  }
  napi_value value;
  if (!set_string(env, result, addrKey, text, NAPI_AUTO_LENGTH)) return false;
  if (napi_create_uint32(env, port, &value) != napi_ok ||
      napi_set_named_property(env, result, portKey, value) != napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "set_port");
    return false;
  }
  return true;
}

/* describeSocket(fd) -> { family, type, listening, address?, port?, path?, peerAddress?,
   peerPort? } | -errno. The peer is set for a connected inet/inet6 socket (getpeername). */
static napi_value baton_describe_socket(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv) || !get_fd_arg(env, argv[0], &fd)) return NULL;

  int domain = 0, type = 0, accepting = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return make_neg_errno(env, errno);
  len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return make_neg_errno(env, errno);
  len = sizeof accepting;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0) {
    return make_neg_errno(env, errno);
  }
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockname(fd, (struct sockaddr*)&ss, &sslen) != 0) return make_neg_errno(env, errno);

  const char* family_name = domain == AF_INET    ? "inet"
                            : domain == AF_INET6 ? "inet6"
                            : domain == AF_UNIX  ? "unix"
                                                 : "other";
  const char* type_name = type == SOCK_STREAM      ? "stream"
                          : type == SOCK_DGRAM     ? "dgram"
                          : type == SOCK_SEQPACKET ? "seqpacket"
                          : type == SOCK_RAW       ? "raw"
                                                   : "other";
  napi_value result, value;
  NAPI_CALL(env, napi_create_object(env, &result));
  if (!set_string(env, result, "family", family_name, NAPI_AUTO_LENGTH)) return NULL;
  if (!set_string(env, result, "type", type_name, NAPI_AUTO_LENGTH)) return NULL;
  NAPI_CALL(env, napi_get_boolean(env, accepting != 0, &value));
  NAPI_CALL(env, napi_set_named_property(env, result, "listening", value));

  if (domain == AF_INET && ss.ss_family == AF_INET) {
    const struct sockaddr_in* sin = (const struct sockaddr_in*)&ss;
    char text[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text) == NULL) {
      return make_neg_errno(env, errno);
    }
    if (!set_string(env, result, "address", text, NAPI_AUTO_LENGTH)) return NULL;
    NAPI_CALL(env, napi_create_uint32(env, ntohs(sin->sin_port), &value));
    NAPI_CALL(env, napi_set_named_property(env, result, "port", value));
  } else if (domain == AF_INET6 && ss.ss_family == AF_INET6) {
    const struct sockaddr_in6* sin6 = (const struct sockaddr_in6*)&ss;
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text) == NULL) {
      return make_neg_errno(env, errno);
    }
    if (!set_string(env, result, "address", text, NAPI_AUTO_LENGTH)) return NULL;
    NAPI_CALL(env, napi_create_uint32(env, ntohs(sin6->sin6_port), &value));
    NAPI_CALL(env, napi_set_named_property(env, result, "port", value));
  } else if (domain == AF_UNIX) {
    const struct sockaddr_un* sun = (const struct sockaddr_un*)&ss;
    size_t base = offsetof(struct sockaddr_un, sun_path);
    size_t pathlen = sslen > base ? (size_t)sslen - base : 0;
    if (pathlen > sizeof sun->sun_path) pathlen = sizeof sun->sun_path;
    if (pathlen == 0) {
      if (!set_string(env, result, "path", "", 0)) return NULL; /* unnamed */
    } else if (sun->sun_path[0] == '\0') {
      /* Abstract namespace: the name is the pathlen - 1 bytes after the NUL. libuv (so
         Node) binds abstract names padded with NULs to the full sun_path, so trailing NULs
         are dropped: '@name' is what net.connect('\0name') reaches. */
      char text[sizeof sun->sun_path + 1];
      text[0] = '@';
      memcpy(text + 1, sun->sun_path + 1, pathlen - 1);
      size_t textlen = pathlen;
      while (textlen > 1 && text[textlen - 1] == '\0') textlen--;
      if (!set_string(env, result, "path", text, textlen)) return NULL;
    } else {
      if (!set_string(env, result, "path", sun->sun_path, strnlen(sun->sun_path, pathlen))) {
        return NULL;
      }
    }
  }
  if (domain == AF_INET || domain == AF_INET6) {
    /* A connected socket (a TCP connection, a connected UDP socket) names its peer; ENOTCONN
       for the others, which is not an error here. */
    struct sockaddr_storage peer;
    socklen_t peerlen = sizeof peer;
    memset(&peer, 0, sizeof peer);
    if (getpeername(fd, (struct sockaddr*)&peer, &peerlen) == 0 &&
        !set_inet_address(env, result, &peer, "peerAddress", "peerPort")) {
      return NULL;
    }
  }
  return result;
}

/* ---------------------------------------------------------------------------------------- */
/* Watch set: an epoll instance of many fds, itself watched by one poller                    */
/* ---------------------------------------------------------------------------------------- */
/*
 * Parking thousands of idle connections with one uv_poll_t each costs some 5 µs per fd
 * (libuv probes each fd with epoll_ctl ADD + DEL and an ioctl, then adds it again, and every
 * poller is a JS object with a callback reference). One epoll instance holding all of them,
 * watched as a single fd by one poller, costs one epoll_ctl per fd.
 *
 * Registrations are level-triggered, with the fd number as the event's data. An epoll
 * registration lives as long as the open file description, which is shared with other
 * processes (the fd came over SCM_RIGHTS): the caller must remove an fd (epollDel, or take it
 * with epollTakeReady) before closing it, or close the epoll fd itself, which drops all.
 */

/* epollCreate() -> epoll fd (CLOEXEC; the caller owns it) | -errno */
static napi_value baton_epoll_create(napi_env env, napi_callback_info info) {
  (void)info;
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return make_neg_errno(env, errno);
  return make_int(env, epfd);
}

static napi_value epoll_change(napi_env env, napi_callback_info info, int op) {
  napi_value argv[2];
  int epfd, fd;
  if (!get_args(env, info, 2, argv) || !get_fd_arg(env, argv[0], &epfd) ||
      !get_fd_arg(env, argv[1], &fd)) {
    return NULL;
  }
  struct epoll_event event;
  memset(&event, 0, sizeof event);
  event.events = EPOLLIN | EPOLLRDHUP;
  event.data.fd = fd;
  if (epoll_ctl(epfd, op, fd, &event) != 0) return make_neg_errno(env, errno);
  return make_int(env, 0);
}

/* epollAdd(epfd, fd) -> 0 | -errno: watch fd for readability (bytes, EOF, hang-up, error) */
static napi_value baton_epoll_add(napi_env env, napi_callback_info info) {
  return epoll_change(env, info, EPOLL_CTL_ADD);
}

/* epollDel(epfd, fd) -> 0 | -errno */
static napi_value baton_epoll_del(napi_env env, napi_callback_info info) {
  return epoll_change(env, info, EPOLL_CTL_DEL);
}

#define BATON_MAX_READY 1024

/*
 * epollTakeReady(epfd, max) -> number[] | -errno
 * The fds that are ready now (at most max, at most 1024; never waits), each already removed
 * from the set.
 */
static napi_value baton_epoll_take_ready(napi_env env, napi_callback_info info) {
  int epfd;
  int32_t max;
  if (!get_fd_int32_args(env, info, &epfd, "max", &max)) return NULL;
  if (max < 1) max = 1;
  if (max > BATON_MAX_READY) max = BATON_MAX_READY;
  struct epoll_event events[BATON_MAX_READY];
  int n;
  do {
    n = epoll_wait(epfd, events, max, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return make_neg_errno(env, errno);
  napi_value result, value;
  NAPI_CALL(env, napi_create_array_with_length(env, (size_t)n, &result));
  for (int i = 0; i < n; i++) {
    int fd = events[i].data.fd;
    /* Taken out of the set: the caller gives it to something that watches it itself. */
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    NAPI_CALL(env, napi_create_int32(env, fd, &value));
    NAPI_CALL(env, napi_set_element(env, result, (uint32_t)i, value));
  }
  return result;
}

/* ---------------------------------------------------------------------------------------- */
/* Poller: uv_poll_t on the Node event loop                                                 */
/* ---------------------------------------------------------------------------------------- */

/*
 * Lifecycle. A baton_poll is owned jointly by the JS external (its finalizer) and libuv (the
 * close callback); it is freed when both are done. It is closed (uv_poll_stop + uv_close) by
 * the first of: pollClose() from JS, the external's finalizer (garbage collected without
 * pollClose), or the environment's async cleanup hook (worker or main thread teardown, which
 * waits for the close callback). After closing starts, JS is never called again.
 */
typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;           /* strong reference while open */
  napi_async_context context;  /* for napi_make_callback */
  napi_async_cleanup_hook_handle cleanup_hook; /* registered hook, NULL once removed */
  napi_async_cleanup_hook_handle cleanup_done; /* set while teardown waits on our close */
  int fd;
  bool closing;
  bool uv_closed;
  bool finalized;
} baton_poll;

static const napi_type_tag baton_poll_tag = {0x6261746f6e706f6cULL, 0x6c5f686e646c0001ULL};

static void poll_maybe_free(baton_poll* p) {
  if (p->uv_closed && p->finalized) free(p);
}

static void poll_on_close(uv_handle_t* handle) {
  baton_poll* p = (baton_poll*)handle->data;
  p->uv_closed = true;
  if (p->cleanup_done != NULL) {
    napi_async_cleanup_hook_handle done = p->cleanup_done;
    p->cleanup_done = NULL;
    napi_remove_async_cleanup_hook(done);
  }
  poll_maybe_free(p);
}

/* Drop the JS-side resources (no JS is run). Safe to call more than once. */
static void poll_release_js(baton_poll* p) {
  if (p->callback != NULL) {
    napi_delete_reference(p->env, p->callback);
    p->callback = NULL;
  }
  if (p->context != NULL) {
    napi_async_destroy(p->env, p->context);
    p->context = NULL;
  }
}

/* Stop and close the uv handle once. The fd is not closed: it belongs to the caller. */
static void poll_begin_close(baton_poll* p) {
  if (p->closing) return;
  p->closing = true;
  uv_poll_stop(&p->handle);
  uv_close((uv_handle_t*)&p->handle, poll_on_close);
}

static void poll_unregister_cleanup(baton_poll* p) {
  if (p->cleanup_hook != NULL) {
    napi_async_cleanup_hook_handle hook = p->cleanup_hook;
    p->cleanup_hook = NULL;
    napi_remove_async_cleanup_hook(hook);
  }
}

static void poll_env_teardown(napi_async_cleanup_hook_handle done, void* data) {
  baton_poll* p = (baton_poll*)data;
  p->cleanup_hook = NULL; /* this registration is consumed by `done` */
  poll_release_js(p);
  if (p->uv_closed) {
    napi_remove_async_cleanup_hook(done);
    return;
  }
  p->cleanup_done = done;
  poll_begin_close(p);
}

static void poll_finalize(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  baton_poll* p = (baton_poll*)data;
  p->finalized = true;
  poll_unregister_cleanup(p);
  poll_release_js(p);
  if (!p->closing) {
    poll_begin_close(p);
  } else {
    poll_maybe_free(p);
  }
}

/* Report an exception thrown by the JS callback like any other uncaught exception. */
static void report_callback_exception(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  napi_value error;
  if (napi_get_and_clear_last_exception(env, &error) == napi_ok) {
    napi_fatal_exception(env, error);
  }
}

static void poll_on_event(uv_poll_t* handle, int status, int events) {
  baton_poll* p = (baton_poll*)handle->data;
  if (p->closing || p->callback == NULL) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value callback, global, argv[3];
  if (napi_get_reference_value(env, p->callback, &callback) == napi_ok && callback != NULL &&
      napi_get_global(env, &global) == napi_ok &&
      napi_create_int32(env, status, &argv[0]) == napi_ok &&
      napi_get_boolean(env, (events & UV_READABLE) != 0, &argv[1]) == napi_ok &&
      napi_get_boolean(env, (events & UV_WRITABLE) != 0, &argv[2]) == napi_ok) {
    napi_status s = napi_make_callback(env, p->context, global, callback, 3, argv, NULL);
    /* `p` may be closing now (pollClose from the callback); it is not freed before its
       uv close callback, which runs later, so nothing here touches it anyway. */
    if (s != napi_ok) report_callback_exception(env);
  } else {
    report_callback_exception(env);
  }
  napi_close_handle_scope(env, scope);
}

static int poll_events(bool readable, bool writable) {
  return (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
}

/* Apply the wanted events: start (or restart) the watcher, or stop it when none. */
static int poll_apply(baton_poll* p, bool readable, bool writable) {
  int events = poll_events(readable, writable);
  if (events == 0) return uv_poll_stop(&p->handle);
  return uv_poll_start(&p->handle, events, poll_on_event);
}

/* The baton_poll behind a handle from pollStart, or NULL with a TypeError pending. */
static baton_poll* get_poll_arg(napi_env env, napi_value value) {
  napi_valuetype type;
  bool tagged = false;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &baton_poll_tag, &tagged) != napi_ok || !tagged) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
                          "baton_native: handle must come from pollStart()");
    return NULL;
  }
  void* data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    baton_throw_last_error(env, napi_generic_failure, "napi_get_value_external");
    return NULL;
  }
  return (baton_poll*)data;
}

/* pollStart(fd, wantReadable, wantWritable, callback) -> handle | -errno */
static napi_value baton_poll_start(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int fd;
  bool readable, writable;
  if (!get_args(env, info, 4, argv) || !get_fd_arg(env, argv[0], &fd) ||
      !get_bool_arg(env, argv[1], "wantReadable", &readable) ||
      !get_bool_arg(env, argv[2], "wantWritable", &writable)) {
    return NULL;
  }
  napi_valuetype type;
  NAPI_CALL(env, napi_typeof(env, argv[3], &type));
  if (type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "baton_native: callback must be a function");
    return NULL;
  }
  if (fd < 0) return make_neg_errno(env, EBADF);

  uv_loop_t* loop = NULL;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));

  baton_poll* p = (baton_poll*)calloc(1, sizeof *p);
  if (p == NULL) return make_neg_errno(env, ENOMEM);
  p->env = env;
  p->fd = fd;
  int rc = uv_poll_init(loop, &p->handle, fd);
  if (rc != 0) {
    free(p); /* an initialization failure leaves nothing registered with the loop */
    return make_int(env, rc);
  }
  p->handle.data = p;
  /* From here on the handle is live: every failure path closes it through uv_close. */
  p->finalized = true; /* no external yet: the close callback alone frees */

  napi_value resource, resource_name, external;
  NAPI_CALL_GOTO(env, napi_create_object(env, &resource), fail);
  NAPI_CALL_GOTO(env, napi_create_string_utf8(env, "BatonPoll", NAPI_AUTO_LENGTH, &resource_name),
                 fail);
  NAPI_CALL_GOTO(env, napi_async_init(env, resource, resource_name, &p->context), fail);
  NAPI_CALL_GOTO(env, napi_create_reference(env, argv[3], 1, &p->callback), fail);
  NAPI_CALL_GOTO(env, napi_create_external(env, p, poll_finalize, NULL, &external), fail);
  p->finalized = false; /* the external's finalizer now owns its share */
  if (napi_type_tag_object(env, external, &baton_poll_tag) != napi_ok ||
      napi_add_async_cleanup_hook(env, poll_env_teardown, p, &p->cleanup_hook) != napi_ok) {
    baton_throw_last_error(env, napi_generic_failure, "pollStart setup");
    poll_unregister_cleanup(p);
    poll_release_js(p);
    poll_begin_close(p); /* the finalizer and close callback free it */
    return NULL;
  }
  rc = poll_apply(p, readable, writable);
  if (rc != 0) {
    poll_unregister_cleanup(p);
    poll_release_js(p);
    poll_begin_close(p);
    return make_int(env, rc);
  }
  return external;
fail:
  poll_release_js(p);
  poll_begin_close(p);
  return NULL;
}

/* pollUpdate(handle, wantReadable, wantWritable) -> 0 | -errno (EBADF after pollClose) */
static napi_value baton_poll_update(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bool readable, writable;
  if (!get_args(env, info, 3, argv)) return NULL;
  baton_poll* p = get_poll_arg(env, argv[0]);
  if (p == NULL || !get_bool_arg(env, argv[1], "wantReadable", &readable) ||
      !get_bool_arg(env, argv[2], "wantWritable", &writable)) {
    return NULL;
  }
  if (p->closing) return make_neg_errno(env, EBADF);
  return make_int(env, poll_apply(p, readable, writable));
}

/* pollRef(handle, ref) -> 0 | -errno */
static napi_value baton_poll_ref(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool ref;
  if (!get_args(env, info, 2, argv)) return NULL;
  baton_poll* p = get_poll_arg(env, argv[0]);
  if (p == NULL || !get_bool_arg(env, argv[1], "ref", &ref)) return NULL;
  if (p->closing) return make_neg_errno(env, EBADF);
  if (ref) {
    uv_ref((uv_handle_t*)&p->handle);
  } else {
    uv_unref((uv_handle_t*)&p->handle);
  }
  return make_int(env, 0);
}

/* pollClose(handle) -> 0. Idempotent. Does not close the fd. */
static napi_value baton_poll_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  baton_poll* p = get_poll_arg(env, argv[0]);
  if (p == NULL) return NULL;
  poll_unregister_cleanup(p);
  poll_release_js(p);
  poll_begin_close(p);
  return make_int(env, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Module                                                                                   */
/* ---------------------------------------------------------------------------------------- */

#define EXPORT_FN(name, fn) \
  { name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL }

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      EXPORT_FN("socketpair", baton_socketpair),
      EXPORT_FN("unixListen", baton_unix_listen),
      EXPORT_FN("unixConnect", baton_unix_connect),
      EXPORT_FN("unixConnectWait", baton_unix_connect_wait),
      EXPORT_FN("accept", baton_accept),
      EXPORT_FN("datagramSend", baton_datagram_send),
      EXPORT_FN("datagramBind", baton_datagram_bind),
      EXPORT_FN("sendmsg", baton_sendmsg),
      EXPORT_FN("recvmsg", baton_recvmsg),
      EXPORT_FN("peek", baton_peek),
      EXPORT_FN("close", baton_close),
      EXPORT_FN("dup", baton_dup),
      EXPORT_FN("growFdTable", baton_grow_fd_table),
      EXPORT_FN("epollCreate", baton_epoll_create),
      EXPORT_FN("epollAdd", baton_epoll_add),
      EXPORT_FN("epollDel", baton_epoll_del),
      EXPORT_FN("epollTakeReady", baton_epoll_take_ready),
      EXPORT_FN("peerCredentials", baton_peer_credentials),
      EXPORT_FN("describeSocket", baton_describe_socket),
      EXPORT_FN("pollStart", baton_poll_start),
      EXPORT_FN("pollUpdate", baton_poll_update),
      EXPORT_FN("pollRef", baton_poll_ref),
      EXPORT_FN("pollClose", baton_poll_close),
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof properties / sizeof properties[0],
                                        properties));
  napi_value max_fds;
  NAPI_CALL(env, napi_create_int32(env, BATON_MAX_FDS, &max_fds));
  NAPI_CALL(env, napi_set_named_property(env, exports, "MAX_FDS_PER_MESSAGE", max_fds));
  return exports;
}
