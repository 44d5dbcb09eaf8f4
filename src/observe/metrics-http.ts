/**
 * Serving a {@link MetricSet} over HTTP: a request handler to mount in an
 * app, and a listener of its own (the library's), or a listening fd the
 * supervisor's master owns.
 */
import http from 'node:http';
import type { MetricSet } from './metric-set.js';

/**
 * A `(req, res)` handler answering `GET /metrics` (or `path`) with the
 * metrics in Prometheus' text format, 404 for anything else. Mount it in an
 * app's server (`if (req.url === '/metrics') return handler(req, res)`), or
 * use it as a whole server's handler.
 */
export function metricsHandler(set: MetricSet, path = '/metrics'): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    if ((q < 0 ? url : url.slice(0, q)) !== path || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`baton serves metrics on ${path}\n`);
      return;
    }
    set.render().then(
      (text) => res.writeHead(200, { 'content-type': set.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
    );
  };
}

/** A server for {@link metricsHandler}; it is unref'd, so it never keeps the process alive by itself. */
export function metricsServer(set: MetricSet, path?: string): http.Server {
  const server = http.createServer(metricsHandler(set, path));
  server.unref();
  return server;
}
