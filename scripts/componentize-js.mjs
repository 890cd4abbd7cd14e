// Builds a JavaScript plugin into a component with componentize-js's componentize()
// API. Run from the repository root (the JS engine sees files below the working
// directory only): node scripts/componentize-js.mjs APP.js OUT.wasm
// COMPONENTIZE_JS names the package's entry file (scripts/toolchains.sh js prints it).
import { writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

const [source, out] = process.argv.slice(2);
if (!source || !out || !process.env.COMPONENTIZE_JS) {
  console.error('usage: COMPONENTIZE_JS=... node scripts/componentize-js.mjs APP.js OUT.wasm');
  process.exit(2);
}
const { componentize } = await import(pathToFileURL(process.env.COMPONENTIZE_JS));
const { component } = await componentize({
  sourcePath: source,
  witPath: 'wit',
  worldName: 'reconciler',
  // A reconciler needs no clocks, randomness or HTTP; stdio stays for console.log.
  disableFeatures: ['random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
