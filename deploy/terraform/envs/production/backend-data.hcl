bucket         = "magento-production-terraform-state"
key            = "data/terraform.tfstate"
region         = "eu-west-1"
dynamodb_table = "magento-production-terraform-locks"
encrypt        = true
