{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "ListBackupVersionsOnly",
      "Effect": "Allow",
      "Action": [
        "s3:ListBucket",
        "s3:ListBucketVersions"
      ],
      "Resource": "arn:aws:s3:::${bucket}",
      "Condition": { "StringLike": { "s3:prefix": ["${prefix}*"] } }
    },
    {
      "Sid": "ReadBackupVersions",
      "Effect": "Allow",
      "Action": [
        "s3:GetObject",
        "s3:GetObjectVersion"
      ],
      "Resource": "arn:aws:s3:::${bucket}/${prefix}*"
    }
  ]
}
