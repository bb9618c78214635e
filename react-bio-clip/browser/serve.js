'use strict';
// A static file server on 127.0.0.1 for the browser pages: / is build-browser/ (the bundles),
// /export/ an export directory, /fixture/ a test fixture directory (optional). Used by the
// browser tests and by `npm run demo -- --export_dir=DIR`.
const fs = require('fs');
const http = require('http');
const path = require('path');

const TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.json': 'application/json',
               '.map': 'application/json', '.png': 'image/png', '.jpg': 'image/jpeg', '.css': 'text/css'};

/** mounts: {'/': dir, '/export': dir, ...}. Resolves to {server, url}. Port 0 = any free port. */
function serve(mounts, port = 0) {
  const roots = Object.entries(mounts).sort((a, b) => b[0].length - a[0].length);
  const server = http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    const mount = roots.find(([prefix]) => prefix === '/' || urlPath === prefix || urlPath.startsWith(prefix + '/'));
    if (!mount) return send(res, 404, 'not found');
    const [prefix, dir] = mount;
    let file = path.join(dir, prefix === '/' ? urlPath : urlPath.slice(prefix.length));
    if (!path.resolve(file).startsWith(path.resolve(dir))) return send(res, 403, 'forbidden');
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    fs.readFile(file, (error, data) => {
      if (error) return send(res, 404, 'not found');
      res.writeHead(200, {'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store'});
      res.end(data);
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => {
    resolve({server, url: `http://127.0.0.1:${server.address().port}`});
  }));
}

function send(res, status, text) {
  res.writeHead(status, {'content-type': 'text/plain'});
  res.end(text);
}

module.exports = {serve};
