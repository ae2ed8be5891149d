// The page's entry, small and loaded on its own: start what every page load needs (early.ts), then
// load and run the rest (main.tsx), which Vite puts in a chunk of its own.
import './early.js';

void import('./main.js');
