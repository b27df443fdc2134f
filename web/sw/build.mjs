// Builds the service worker bundle that the Go binary embeds
// (internal/swbundle/sw.js). Deterministic: same lockfile, same bytes.
// Run with `npm ci && npm run build`; .ci/run checks the committed bundle
// matches a fresh build.
import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
const out = path.join(here, '..', '..', 'internal', 'swbundle', 'sw.js')

await build({
  absWorkingDir: here,
  entryPoints: ['src/sw.js'],
  outfile: out,
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome120', 'firefox120', 'safari17'],
  minify: true,
  legalComments: 'none',
  sourcemap: false,
  charset: 'utf8',
  treeShaking: true,
  define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
  logLevel: 'warning'
})
console.log('wrote', path.relative(process.cwd(), out))
