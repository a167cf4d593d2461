// Vite's `?raw` suffix imports a file's text (used for test fixtures).
declare module "*?raw" {
  const content: string;
  export default content;
}
