// The API's requests are defined once, in protocol/, for the server and the client.
export * from '../../protocol/requests.js'
