import {Column, CreateDateColumn, Entity, PrimaryColumn} from 'typeorm'

/** An uploaded, client-encrypted file; its bytes live in `blob_chunks`. */
@Entity({name: 'blobs'})
export class Blob {
  @PrimaryColumn({type: 'uuid'})
  id!: string

  @Column({name: 'uploader_id', type: 'bigint'})
  uploaderId!: string

  @Column({type: 'bigint'})
  size!: string

  @CreateDateColumn({name: 'created_at', type: 'timestamptz'})
  createdAt!: Date
}

/** A fixed-size slice of a blob, so neither side ever holds a whole file in memory. */
@Entity({name: 'blob_chunks'})
export class BlobChunk {
  @PrimaryColumn({name: 'blob_id', type: 'uuid'})
  blobId!: string

  @PrimaryColumn({type: 'integer'})
  idx!: number

  @Column({type: 'bytea'})
  data!: Buffer
}
