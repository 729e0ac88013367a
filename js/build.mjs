// Bundles the TypeScript views into one ES module that every Python view class loads as `_esm`.
// The output lands inside the Python package (git-ignored) so the wheel ships it and anywidget
// serves it: no labextension and no CDN are involved.
import { build } from "esbuild";

await build({
  entryPoints: ["src/widget.ts"],
  outfile: "../src/filterscope/static/widget.js",
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  logLevel: "warning",
});
