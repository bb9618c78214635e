'use strict';
// Launches Debian's Chromium (never a downloaded browser) with puppeteer-core, headless with
// WebGL on SwiftShader, and serves the bundled pages (build-browser/) plus the fixtures.
const {execFileSync} = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const puppeteer = require('puppeteer-core');
const {serve} = require('../browser/serve');

const ROOT = path.join(__dirname, '..');
const BUILD = path.join(ROOT, 'build-browser');

function chromiumPath() {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  try {
    return execFileSync('which', ['chromium'], {encoding: 'utf8'}).trim();
  } catch {
    throw new Error('no chromium on PATH: `apt-get update && apt-get install -y chromium` (make test-browser does)');
  }
}

async function launch() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbc-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    userDataDir,
    // --no-sandbox: tests run as root. --enable-unsafe-swiftshader keeps software WebGL 2 on.
    // Never --disable-gpu / --use-gl=...: they turn WebGL off here.
    args: ['--no-sandbox', '--enable-unsafe-swiftshader', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  const close = async () => {
    await browser.close();
    fs.rmSync(userDataDir, {recursive: true, force: true});
  };
  return {browser, close};
}

/** A page whose console errors and page errors become test failures' messages. */
async function newPage(browser, log) {
  const page = await browser.newPage();
  page.on('console', (msg) => log.push(`[${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (error) => log.push(`[pageerror] ${error.message}`));
  return page;
}

module.exports = {ROOT, BUILD, launch, newPage, serve};
