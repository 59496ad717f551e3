export * from './data-map.ts';
export * from './mask.ts';
