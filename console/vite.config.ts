import { defineConfig } from 'vite';

// The bundle in `dist/` is committed and embedded into the switchboard
// binary at compile time (src/http/console.rs). `npm run build` reproduces
// it byte for byte; CI checks that it is up to date.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
  },
});
