export { Gateway, type RouteEndpoint } from './gateway.js';
