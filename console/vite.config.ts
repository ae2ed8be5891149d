// Builds the site console into dist/console: hashed files only, no inline script (the hub's
// Content-Security-Policy allows scripts and styles from its own origin and nothing else), nothing
// fetched from another origin at run time.
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

/**
 * The page's entry (boot.ts) is small and loads main.tsx's chunk with a dynamic import; this names
 * that chunk and its style sheet in index.html as well, so the browser fetches them while it reads the
 * page instead of after boot.ts has run.
 */
function preloadMain(): Plugin {
  return {
    name: 'outpost-preload-main',
    apply: 'build',
    transformIndexHtml: {
      order: 'post',
      handler(_html, context) {
        const main = Object.values(context.bundle ?? {}).find(
          (file) => file.type === 'chunk' && file.name === 'main' && !file.isEntry,
        );
        if (!main || main.type !== 'chunk') return [];
        const css = [...(main.viteMetadata?.importedCss ?? [])];
        return [
          {
            tag: 'link',
            attrs: { rel: 'modulepreload', crossorigin: true, href: `/${main.fileName}` },
            injectTo: 'head',
          },
          ...css.map((file) => ({
            tag: 'link',
            attrs: { rel: 'stylesheet', href: `/${file}` },
            injectTo: 'head' as const,
          })),
        ];
      },
    },
  };
}

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  publicDir: 'public',
  plugins: [preloadMain()],
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    // The polyfill would be an inline script; every browser the console supports has modulepreload.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    target: 'es2022',
    reportCompressedSize: false,
  },
});
